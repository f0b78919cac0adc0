\set o random(1, :orgs)
WITH item AS (INSERT INTO data_items (org_id, id, name, value, created_at, updated_at)
    VALUES (('00000000-0000-0000-0000-' || lpad(:o::text, 12, '0'))::uuid, bench_v7(), 'written', '{"n":1}', now(), now())
    RETURNING org_id, id)
INSERT INTO audit_events (org_id, id, actor_type, actor_id, action, target_type, target_id, metadata, ip, user_agent, request_id, created_at)
    SELECT org_id, bench_v7(), 'api_key', 'key_0123456789abcdef', 'data_item.created', 'data_item', id::text,
           '{"name":"written"}', '127.0.0.1', 'bench', 'req_0123456789abcdef', now()
    FROM item;

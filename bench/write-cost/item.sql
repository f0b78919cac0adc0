\set o random(1, :orgs)
INSERT INTO data_items (org_id, id, name, value, created_at, updated_at)
VALUES (('00000000-0000-0000-0000-' || lpad(:o::text, 12, '0'))::uuid, bench_v7(), 'written', '{"n":1}', now(), now());

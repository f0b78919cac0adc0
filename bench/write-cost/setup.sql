-- 1,000 organizations with ids 00000000-0000-0000-0000-000000000001 … 1000, a copy of
-- data_items without the foreign key to organizations, and time-ordered ids like the
-- service's (UUIDv7: PostgreSQL 15 has no uuidv7()).
INSERT INTO organizations (id, name, slug, created_at, updated_at)
    SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid, 'Org ' || i, 'org-' || i, now(), now()
    FROM generate_series(1, 1000) i;
CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text NOT NULL);
CREATE TABLE items_nofk (LIKE data_items INCLUDING ALL);
CREATE FUNCTION bench_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || substr(md5(random()::text), 1, 20))::uuid
$$;

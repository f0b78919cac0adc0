#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (the official image's
# /docker-entrypoint-initdb.d): the service's own login role, a member of `tenantry_app`
# (the role the migrations grant data rights to), so the instances never connect as the
# superuser that owns the schema; that one only runs the migrations.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="${TENANTRY_DB_PASSWORD:?set TENANTRY_DB_PASSWORD}" \
    --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
        CREATE ROLE tenantry_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END $$;
CREATE ROLE tenantry_service LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'pw' IN ROLE tenantry_app;
SQL

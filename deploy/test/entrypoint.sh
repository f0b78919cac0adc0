#!/bin/sh
# `postgres …`: initialises $PGDATA on first start the way the official image does
# (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; password auth from other hosts; the
# scripts in /docker-entrypoint-initdb.d run once against the new database), then runs the
# server as the postgres user. Anything else runs as given.
set -eu
if [ "${1:-}" = "postgres" ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA"
        chown postgres:postgres "$PGDATA"
        chmod 700 "$PGDATA"
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pwfile"
        chown postgres "$pwfile"
        runuser -u postgres -- initdb --username="${POSTGRES_USER:-postgres}" \
            --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        # Socket only, on the port the scripts' psql will look for.
        export PGPORT="${PGPORT:-5432}"
        runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p $PGPORT" -w start >/dev/null
        db="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
        if [ "$db" != "postgres" ]; then
            runuser -u postgres -- psql -q -U "${POSTGRES_USER:-postgres}" -d postgres \
                -c "CREATE DATABASE \"$db\""
        fi
        for script in /docker-entrypoint-initdb.d/*.sh; do
            [ -e "$script" ] || continue
            runuser -u postgres -- sh "$script"
        done
        runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    exec runuser -u postgres -- postgres -c listen_addresses='*' "$@"
fi
exec "$@"

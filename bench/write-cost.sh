#!/usr/bin/env bash
# The database cost of an audited write, step by step: pgbench (16 clients, 2 threads,
# prepared statements, 8 s each) on a scratch database with Tenantry's PostgreSQL schema,
# as the superuser (no row-level security), without the HTTP path and without the sealer.
# Each step adds one part of the endpoint's statement; every figure is printed with its
# ratio to the single-row INSERT ceiling measured in the same run.
#
#   bash bench/write-cost.sh            # PGHOST/PGPORT/PGUSER as for psql; default local
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
db="tenantry_write_cost_$$"
scripts=bench/write-cost
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
psql -d postgres -qc "CREATE DATABASE $db"
for f in crates/tenantry/migrations/postgres/*.sql; do
    psql -d "$db" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
done
psql -d "$db" -q -v ON_ERROR_STOP=1 -f "$scripts/setup.sql" >/dev/null

run() { # step [orgs]; a step ending in -nofk is its base step on the copy without the key
    local base="${1%-nofk}"
    if [ "$base" != "$1" ]; then
        sed 's/data_items/items_nofk/' "$scripts/$base.sql" >"$work/$1.sql"
    else
        cp "$scripts/$1.sql" "$work/$1.sql"
    fi
    pgbench -n -c 16 -j 2 -T 8 -M prepared -D "orgs=${2:-1}" -f "$work/$1.sql" "$db" 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
ceiling=$(run insert)
printf '%-58s %8.0f/s\n' "single-row INSERT ceiling (bench_insert)" "$ceiling"
for orgs in 1 1000; do
    for step in item item-nofk item-record item-record-marker item-record-marker-nofk; do
        tps=$(run "$step" "$orgs")
        awk -v what="$step, $orgs organization(s)" -v tps="$tps" -v ceiling="$ceiling" \
            'BEGIN { printf "%-58s %8.0f/s = %.2fx\n", what, tps, tps / ceiling }'
    done
done

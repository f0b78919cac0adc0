#!/usr/bin/env bash
# Property-based fuzzing of the live server against its own OpenAPI document
# (schemathesis): every response must be a declared status, match its declared schema and
# content type, and never be a 5xx. Starts a fresh server on SQLite with the demo data,
# signs in as the demo owner and fuzzes every operation for FUZZ_SECONDS (default 120).
#
#   bash bench/fuzz/api.sh            # FUZZ_SECONDS=600 FUZZ_PORT=4610 to change
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 -m pip install --quiet --disable-pip-version-check schemathesis
cargo build -q -p tenantry
bin=target/debug/tenantry
port="${FUZZ_PORT:-4610}"
dir=$(mktemp -d)
export DATA_DIR="$dir" HOST=127.0.0.1 PORT="$port" LOG_LEVEL=error
# Limits off: the fuzzer sends thousands of requests from one address.
export IP_RATE_LIMIT=0 API_KEY_RATE_LIMIT=0 ORG_RATE_LIMIT_FREE=0 QUOTA_API_CALLS_FREE=0 \
    AUTH_LOGIN_IP_RATE_LIMIT=1000000 AUTH_LOGIN_IDENTIFIER_RATE_LIMIT=1000000 \
    AUTH_REGISTER_IP_RATE_LIMIT=1000000
"$bin" seed >/dev/null 2>&1
"$bin" serve >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -sf "$base/health" >/dev/null && break
    sleep 0.1
done
token=$(curl -sf "$base/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"owner@example.com","password":"password123"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

org=$(curl -sf "$base/v1/orgs" -H "authorization: Bearer $token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
# Half the cases use the demo organization, so requests get past tenant resolution.
cat >"$dir/schemathesis.toml" <<TOML
[parameters]
"path.org_id" = "$org"
TOML

# Operations that would end the fuzzer's own credential, or delete the organization under
# test, are left out.
schemathesis --config-file "$dir/schemathesis.toml" run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path /v1/auth/logout --exclude-path /v1/me/password \
    --exclude-path /v1/me/sessions/revoke-others \
    --exclude-by 'method == "DELETE" and path == "/v1/orgs/{org_id}"' \
    --max-time "${FUZZ_SECONDS:-120}" --seed "${FUZZ_SEED:-1}" \
    --generation-allow-x00 true --no-color "$@"

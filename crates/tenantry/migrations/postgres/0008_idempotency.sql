-- Idempotency keys of creating requests (`Idempotency-Key`). A key is claimed in the
-- transaction of the change it guards (with the change's audit record), so a request whose
-- change committed can never run twice, even if its client saw a timeout. The response is
-- recorded afterwards, for replays. `scope` names the principal (user, API key, operator);
-- kept 24 hours.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    idem_key     text NOT NULL,
    fingerprint  text NOT NULL,
    status       integer,
    content_type text,
    body         bytea,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO tenantry_app;

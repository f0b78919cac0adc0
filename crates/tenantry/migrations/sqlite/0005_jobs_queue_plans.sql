-- Queue tuning (SQLite). Keep in step with ../postgres/0005_jobs_queue_plans.sql.
-- Leases are found through `locked_until` alone.
DROP INDEX jobs_running;
CREATE INDEX jobs_locked ON jobs (locked_until) WHERE locked_until IS NOT NULL;

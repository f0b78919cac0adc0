-- Queue tuning (PostgreSQL). Keep in step with ../sqlite/0005_jobs_queue_plans.sql.
--
-- Leases are found through `locked_until` alone, so marking a run finished (by id) can never
-- be planned as a scan over every running job.
DROP INDEX jobs_running;
CREATE INDEX jobs_locked ON jobs (locked_until) WHERE locked_until IS NOT NULL;

-- A queue turns its rows over all the time: vacuum it early and unthrottled, so the
-- partial indexes do not fill with entries of rows already claimed or finished.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

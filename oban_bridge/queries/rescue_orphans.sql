-- Jobs left executing by an oban_bridge producer that no longer exists: its uuid is ours (UUID
-- version 8, producer.py) and no session holds its presence lock. Back to available, or discarded
-- when out of attempts, as rescue_jobs.sql does — but without waiting for rescue_after.
UPDATE {prefix}.oban_jobs AS j
SET state = CASE WHEN j.attempt < j.max_attempts THEN 'available'::{prefix}.oban_job_state
                 ELSE 'discarded'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN j.attempt < j.max_attempts THEN j.discarded_at ELSE %(now)s END
WHERE j.state = 'executing'
  AND j.attempted_at < %(before)s
  AND j.attempted_by[2] ~ '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-8'
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
      AND l.classid = (hashtext('oban_bridge.producer')::bigint & 4294967295)::oid
      AND l.objid = (hashtext(j.attempted_by[2])::bigint & 4294967295)::oid
  )
RETURNING j.id, j.queue, j.state

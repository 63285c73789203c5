-- The executing jobs of the given oban_bridge producers, which the lifeline has seen absent for a
-- whole grace period (absent_producers.sql): back to available, or discarded when out of attempts,
-- as rescue_jobs.sql does. The lock is checked once more here: a producer that came back in the
-- meantime keeps its jobs.
UPDATE {prefix}.oban_jobs AS j
SET state = CASE WHEN j.attempt < j.max_attempts THEN 'available'::{prefix}.oban_job_state
                 ELSE 'discarded'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN j.attempt < j.max_attempts THEN j.discarded_at ELSE %(now)s END
WHERE j.state = 'executing'
  AND j.attempted_by[2] = ANY(%(uuids)s::text[])
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
      AND l.classid = (hashtext('oban_bridge.producer')::bigint & 4294967295)::oid
      AND l.objid = (hashtext(j.attempted_by[2])::bigint & 4294967295)::oid
  )
RETURNING j.id, j.queue, j.state, j.worker

-- One round trip per producer cycle: record the outcome of finished jobs, then fetch new ones for
-- the slots those acks free. The fetch is basic.ex fetch_jobs/3: a MATERIALIZED subset (the
-- optimisation fence Oban uses so the planner cannot run the LIMIT subquery more than once), FOR
-- UPDATE SKIP LOCKED, and attempt < max_attempts. Each ack is what basic.ex writes for that
-- outcome: complete_job, error_job (errors || [error], scheduled_at), snooze_job (scheduled,
-- max_attempts + 1), cancel_job and discard_job (error appended); and a Pro chain wait (scheduled,
-- the fetch's attempt taken back: `rewind`). Both halves touch disjoint rows
-- (acked jobs are executing, fetched ones available). Either array may be empty, demand may be 0;
-- PostgreSQL runs a data-modifying CTE to completion even though nothing reads it. Acks travel as
-- one JSON array of records: encoded and parsed in C at both ends, however many there are.
-- Timestamps come back as timestamptz (the columns hold UTC), so psycopg builds aware datetimes
-- in C instead of Python replacing the tzinfo of six naive ones per job.
WITH acked AS (
  UPDATE {prefix}.oban_jobs AS j
  SET state = a.state::{prefix}.oban_job_state,
      completed_at = CASE WHEN a.state = 'completed' THEN a.at ELSE j.completed_at END,
      cancelled_at = CASE WHEN a.state = 'cancelled' THEN a.at ELSE j.cancelled_at END,
      discarded_at = CASE WHEN a.state = 'discarded' THEN a.at ELSE j.discarded_at END,
      scheduled_at = COALESCE(a.scheduled_at, j.scheduled_at),
      max_attempts = j.max_attempts + a.bump,
      attempt = greatest(j.attempt - a.rewind, 0),
      errors = CASE WHEN a.error IS NULL THEN j.errors ELSE j.errors || ARRAY[a.error::jsonb] END,
      meta = CASE WHEN a.meta IS NULL THEN j.meta ELSE COALESCE(j.meta, '{{}}'::jsonb) || a.meta END
  FROM json_to_recordset(%(acks)s::json)
       AS a(id bigint, state text, at timestamp, scheduled_at timestamp, bump int, rewind int, error text, meta jsonb)
  WHERE j.id = a.id
  RETURNING j.id
),
subset AS MATERIALIZED (
  SELECT id FROM {prefix}.oban_jobs
  WHERE state = 'available' AND queue = %(queue)s
  ORDER BY priority ASC, scheduled_at ASC, id ASC
  LIMIT %(demand)s
  FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'executing', attempted_at = %(now)s, attempted_by = %(attempted_by)s::text[],
    attempt = j.attempt + 1
FROM subset
WHERE j.id = subset.id AND j.attempt < j.max_attempts
RETURNING j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
          j.inserted_at AT TIME ZONE 'UTC', j.scheduled_at AT TIME ZONE 'UTC',
          j.attempted_at AT TIME ZONE 'UTC', j.completed_at AT TIME ZONE 'UTC', j.attempted_by,
          j.discarded_at AT TIME ZONE 'UTC', j.priority, j.tags, j.meta, j.cancelled_at AT TIME ZONE 'UTC'

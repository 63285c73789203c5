-- Take one job of a drain's pass as a fetch takes it (ack_fetch_jobs.sql): executing, attempt + 1,
-- attempted_at/by. One at a time, so a drain that stops on a raise (`with_safety=False`) leaves
-- the jobs it did not reach available rather than executing; a job something else took or
-- cancelled meanwhile is passed over.
UPDATE {prefix}.oban_jobs
SET state = 'executing', attempted_at = %(now)s, attempted_by = %(attempted_by)s::text[], attempt = attempt + 1
WHERE id = %(id)s AND state = 'available' AND attempt < max_attempts
RETURNING id, state, queue, worker, args, errors, attempt, max_attempts,
          inserted_at AT TIME ZONE 'UTC', scheduled_at AT TIME ZONE 'UTC',
          attempted_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', attempted_by,
          discarded_at AT TIME ZONE 'UTC', priority, tags, meta, cancelled_at AT TIME ZONE 'UTC'

-- The rows a drain ran, as they ended (drain_jobs with with_summary=False), in the order they ran.
SELECT id, state, queue, worker, args, errors, attempt, max_attempts,
       inserted_at AT TIME ZONE 'UTC', scheduled_at AT TIME ZONE 'UTC',
       attempted_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', attempted_by,
       discarded_at AT TIME ZONE 'UTC', priority, tags, meta, cancelled_at AT TIME ZONE 'UTC'
FROM {prefix}.oban_jobs
WHERE id = ANY(%(ids)s::bigint[])
ORDER BY array_position(%(ids)s::bigint[], id)

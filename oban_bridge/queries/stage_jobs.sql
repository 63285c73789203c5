-- lib/oban/engines/basic.ex stage_jobs/3: due scheduled and retryable jobs become available,
-- newest first, at most `limit` a run.
UPDATE {prefix}.oban_jobs AS j
SET state = 'available'
FROM (
  SELECT id, state FROM {prefix}.oban_jobs
  WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= %(now)s
  ORDER BY scheduled_at DESC, id DESC
  LIMIT %(limit)s
) AS x
WHERE j.id = x.id
RETURNING j.id, j.queue, x.state

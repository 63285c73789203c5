-- lib/oban/engines/basic.ex prune_jobs/3: finished jobs older than max_age, at most `limit`.
DELETE FROM {prefix}.oban_jobs AS j
USING (
  SELECT id FROM {prefix}.oban_jobs
  WHERE (state = 'completed' AND scheduled_at < %(before)s)
     OR (state = 'cancelled' AND cancelled_at < %(before)s)
     OR (state = 'discarded' AND discarded_at < %(before)s)
  LIMIT %(limit)s
) AS x
WHERE j.id = x.id
RETURNING j.id, j.queue, j.state

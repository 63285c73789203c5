-- lib/oban/engines/basic.ex prune_jobs/3: finished jobs older than max_age, at most `limit`. With
-- `queues` (the default scope, plugins/pruner.py) only jobs of those queues: an Elixir app's
-- history, and the completed rows its unique jobs look for, are its own Pruner's to delete.
DELETE FROM {prefix}.oban_jobs AS j
USING (
  SELECT id FROM {prefix}.oban_jobs
  WHERE ((state = 'completed' AND scheduled_at < %(before)s)
      OR (state = 'cancelled' AND cancelled_at < %(before)s)
      OR (state = 'discarded' AND discarded_at < %(before)s))
    AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  LIMIT %(limit)s
) AS x
WHERE j.id = x.id
RETURNING j.id, j.queue, j.state

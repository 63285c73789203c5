-- A drain's `with_scheduled` (drainer.ex stage_scheduled/3): scheduled and retryable jobs of the
-- queue (every queue when NULL) become available at once — or only those due by %(until)s when
-- a time is given. scheduled_at is left as it was, as Oban leaves it.
UPDATE {prefix}.oban_jobs
SET state = 'available'
WHERE state IN ('scheduled', 'retryable')
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(until)s::timestamp IS NULL OR scheduled_at <= %(until)s::timestamp)

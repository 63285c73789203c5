-- The workers of jobs waiting in the given queues, from a bounded sample (a start-up check, so a
-- large table costs one short scan): a node warns about the ones it cannot run.
SELECT DISTINCT s.queue, s.worker
FROM (
  SELECT queue, worker FROM {prefix}.oban_jobs
  WHERE state IN ('available', 'scheduled', 'retryable') AND queue = ANY(%(queues)s::text[])
  LIMIT 10000
) AS s
ORDER BY s.queue, s.worker

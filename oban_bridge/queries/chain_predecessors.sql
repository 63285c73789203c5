-- The states of the earlier jobs of a chain partition (pro/chain.py decides from them whether a
-- job runs, waits or halts): only states that are not `completed` matter, so completed history,
-- however long, is never read.
SELECT DISTINCT state::text AS state
FROM {prefix}.oban_jobs
WHERE meta @> %(partition)s::jsonb AND id < %(id)s
  AND state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended', 'cancelled', 'discarded')

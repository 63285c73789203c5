-- The instance's AdvanceWorker jobs that will still run (AdvanceWorker's unique states), with how
-- many seconds an executing one has been at it (`age` < patience: still worth waiting for). One
-- that is `executing` may already have committed its transaction without seeing a result written
-- after it took the lock: only one that has not started is sure to apply it.
SELECT id, state::text AS state,
       %(patience)s - EXTRACT(EPOCH FROM (timezone('UTC', now()) - attempted_at)) AS left_s
FROM {prefix}.oban_jobs
WHERE worker = 'HephaestusOban.AdvanceWorker' AND args->>'instance_id' = %(id)s
  AND state IN ('available', 'scheduled', 'executing', 'retryable')

-- The signal AdvanceWorker.detect_discarded_steps/2 reads to fail a workflow: a discarded
-- HephaestusOban.ExecuteStepWorker job for the instance, carrying the Python step's error.
INSERT INTO {prefix}.oban_jobs
  (state, queue, worker, args, meta, tags, errors, attempt, max_attempts, attempted_at,
   attempted_by, discarded_at)
VALUES ('discarded', 'hephaestus', 'HephaestusOban.ExecuteStepWorker', %(args)s::jsonb,
        %(meta)s::jsonb, %(tags)s::text[], ARRAY[%(error)s::jsonb], %(attempt)s, %(max_attempts)s,
        %(now)s, %(attempted_by)s::text[], %(now)s)
RETURNING id

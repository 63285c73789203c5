-- The newest Hephaestus job of an instance, for its config_key and the workflow's custom meta and
-- tags (JobMetadata.build merges them from the Elixir workflow module, which Python cannot call).
-- AdvanceWorker and ResumeWorker jobs carry exactly the workflow's meta; ExecuteStepWorker jobs
-- add runtime metadata, so they only serve when nothing else is left (the pruner may have run).
SELECT args, meta, tags FROM {prefix}.oban_jobs
WHERE worker IN ('HephaestusOban.AdvanceWorker', 'HephaestusOban.ResumeWorker',
                 'HephaestusOban.ExecuteStepWorker')
  AND args->>'instance_id' = %(id)s
ORDER BY (worker <> 'HephaestusOban.ExecuteStepWorker') DESC, id DESC
LIMIT 1

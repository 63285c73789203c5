-- One job, as Ecto's Repo.insert writes it for Oban.Engines.Basic: columns left out take the
-- table defaults, so inserted_at and an unset scheduled_at are both timezone('UTC', now()).
INSERT INTO {prefix}.oban_jobs
  (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
VALUES
  (%(state)s::{prefix}.oban_job_state, %(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb,
   %(tags)s::text[], %(priority)s, %(max_attempts)s,
   COALESCE(%(scheduled_at)s::timestamp, timezone('UTC', now())))
RETURNING *

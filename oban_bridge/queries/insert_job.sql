-- One job, as Ecto's Repo.insert writes it for Oban.Engines.Basic: columns left out take the
-- table defaults, so inserted_at and an unset scheduled_at are both timezone('UTC', now()).
-- The insert notification rides in the same statement (engine.ex notify_trigger/2 sends one for
-- an available job): one round trip, and in a transaction it is delivered at commit like Elixir's.
WITH job AS (
  INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
  VALUES
    (%(state)s::{prefix}.oban_job_state, %(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb,
     %(tags)s::text[], %(priority)s, %(max_attempts)s,
     COALESCE(%(scheduled_at)s::timestamp, timezone('UTC', now())))
  RETURNING *
)
SELECT job.*,
       CASE WHEN job.state = 'available' AND %(notify)s THEN pg_notify(%(channel)s, %(payload)s) END AS notified
FROM job

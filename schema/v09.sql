-- Oban.Migrations.Postgres.V09: meta, cancelled_at and the 'cancelled' state.
ALTER TABLE {prefix}.oban_jobs
  ADD COLUMN IF NOT EXISTS meta jsonb DEFAULT '{{}}'::jsonb,
  ADD COLUMN IF NOT EXISTS cancelled_at timestamp without time zone;

ALTER TYPE {prefix}.oban_job_state ADD VALUE IF NOT EXISTS 'cancelled';

CREATE INDEX IF NOT EXISTS oban_jobs_state_queue_priority_scheduled_at_id_index
  ON {prefix}.oban_jobs (state, queue, priority, scheduled_at, id);

-- Oban.Migrations.Postgres.V07
CREATE INDEX IF NOT EXISTS oban_jobs_attempted_at_id_index
  ON {prefix}.oban_jobs (attempted_at desc, id)
  WHERE state in ('completed', 'discarded');

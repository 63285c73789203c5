-- Oban.Migrations.Postgres.V12: priorities above 3, and no more trigger (inserts notify from
-- the application, lib/oban/engine.ex notify_trigger). NOT VALID as Oban adds it.
ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT priority_range;

ALTER TABLE {prefix}.oban_jobs
  ADD CONSTRAINT non_negative_priority CHECK (priority >= 0) NOT VALID;

DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs;
DROP FUNCTION IF EXISTS {prefix}.oban_jobs_notify();

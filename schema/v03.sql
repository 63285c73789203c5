-- Oban.Migrations.Postgres.V03: attempted_by records [node, producer uuid] of each attempt.
ALTER TABLE {prefix}.oban_jobs ADD COLUMN IF NOT EXISTS attempted_by text[];

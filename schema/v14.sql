-- Oban.Migrations.Postgres.V14: the 'suspended' state, placed before 'scheduled'.
ALTER TYPE {prefix}.oban_job_state ADD VALUE IF NOT EXISTS 'suspended' BEFORE 'scheduled';

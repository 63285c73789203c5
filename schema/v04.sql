-- Oban.Migrations.Postgres.V04
DROP FUNCTION IF EXISTS {prefix}.oban_wrap_id(value bigint);

-- Oban.Migrations.Postgres.V06 is a no-op in Oban 2.23.
SELECT 1;

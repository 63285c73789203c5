-- Oban.Migrations.Postgres.V11: oban_peers holds one leader row per Oban instance name.
-- UNLOGGED is Oban's default (`unlogged: true`): leadership need not survive a crash.
CREATE TABLE IF NOT EXISTS {prefix}.oban_peers (
  name text NOT NULL,
  node text NOT NULL,
  started_at timestamp without time zone NOT NULL,
  expires_at timestamp without time zone NOT NULL,
  PRIMARY KEY (name)
);

ALTER TABLE {prefix}.oban_peers SET UNLOGGED;

-- Oban.Migrations.Postgres.V01 (oban-bg/oban lib/oban/migrations/postgres/v01.ex).
-- Placeholders: {prefix} is the quoted schema identifier, {prefix_literal} the schema name as a
-- string literal, {insert_channel} the literal '<prefix>.oban_insert'. Literal braces are doubled.
-- Since 2.23 V01 creates the enum with every state, so a fresh install already has 'suspended'
-- in second place, exactly where V14 puts it on an upgrade.
-- Oban casts the prefix with ::regnamespace, which rejects names that need quoting (spaces,
-- quotes); looking the name up in pg_namespace finds the same schema for every name.
DO $$
BEGIN
IF NOT EXISTS (SELECT 1 FROM pg_type
               WHERE typname = 'oban_job_state'
                 AND typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = {prefix_literal})) THEN
    CREATE TYPE {prefix}.oban_job_state AS ENUM (
      'available',
      'suspended',
      'scheduled',
      'executing',
      'retryable',
      'completed',
      'discarded',
      'cancelled'
    );
  END IF;
END$$;

CREATE TABLE IF NOT EXISTS {prefix}.oban_jobs (
  id bigserial,
  state {prefix}.oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  args jsonb NOT NULL,
  errors jsonb[] NOT NULL DEFAULT ARRAY[]::jsonb[],
  attempt integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 20,
  inserted_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
  scheduled_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
  attempted_at timestamp without time zone,
  completed_at timestamp without time zone,
  PRIMARY KEY (id)
);

CREATE INDEX IF NOT EXISTS oban_jobs_queue_index ON {prefix}.oban_jobs (queue);
CREATE INDEX IF NOT EXISTS oban_jobs_state_index ON {prefix}.oban_jobs (state);
CREATE INDEX IF NOT EXISTS oban_jobs_scheduled_at_index ON {prefix}.oban_jobs (scheduled_at);

CREATE OR REPLACE FUNCTION {prefix}.oban_jobs_notify() RETURNS trigger AS $$
DECLARE
  channel text;
  notice json;
BEGIN
  IF (TG_OP = 'INSERT') THEN
    channel = {insert_channel};
    notice = json_build_object('queue', NEW.queue, 'state', NEW.state);
    IF NEW.scheduled_at IS NOT NULL AND NEW.scheduled_at > now() AT TIME ZONE 'utc' THEN
      RETURN null;
    END IF;
  ELSE
    channel = {update_channel};
    notice = json_build_object('queue', NEW.queue, 'new_state', NEW.state, 'old_state', OLD.state);
  END IF;
  PERFORM pg_notify(channel, notice::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs;

CREATE TRIGGER oban_notify
AFTER INSERT OR UPDATE OF state ON {prefix}.oban_jobs
FOR EACH ROW EXECUTE PROCEDURE {prefix}.oban_jobs_notify();

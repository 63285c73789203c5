-- oban_bridge's own table, beside Oban's and never part of them: `oban-bridge migrate --limits`
-- creates it, Elixir's migrations and `verify`'s comparison with Elixir's schema ignore it, and
-- dropping it loses nothing but the rate windows in progress. One row per queue, partition and
-- sub-window of a rate limit's period, counting the job starts in it (queries/limited_fetch.sql).
-- Global limits need no rows: they count the queue's `executing` jobs, which a dead node's
-- orphans leave when the lifeline rescues them.
CREATE TABLE IF NOT EXISTS {prefix}.oban_bridge_rate_limits (
  queue text NOT NULL,
  partition jsonb NOT NULL,
  bucket bigint NOT NULL,
  starts integer NOT NULL,
  PRIMARY KEY (queue, partition, bucket)
);
COMMENT ON TABLE {prefix}.oban_bridge_rate_limits IS 'oban_bridge rate limit windows, v1';

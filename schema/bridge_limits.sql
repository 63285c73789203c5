-- oban_bridge's own table, beside Oban's and never part of them: `oban-bridge migrate --limits`
-- creates it, Elixir's migrations and `verify`'s comparison with Elixir's schema ignore it, and
-- dropping it loses nothing but the rate windows in progress. One row per queue, partition and
-- sub-window of a rate limit's period, counting the job starts in it (queries/limited_fetch.sql).
-- Global limits count the queue's `executing` jobs, which a dead node's orphans leave when the
-- lifeline rescues them.
CREATE TABLE IF NOT EXISTS {prefix}.oban_bridge_rate_limits (
  queue text NOT NULL,
  partition jsonb NOT NULL,
  bucket bigint NOT NULL,
  starts integer NOT NULL,
  PRIMARY KEY (queue, partition, bucket)
);
COMMENT ON TABLE {prefix}.oban_bridge_rate_limits IS 'oban_bridge rate limit windows, v1';

-- One row per producer holding a share of a global limit over a whole queue (no partition, no
-- rate limit): the slots it may fill without asking again (queries/limit_claim.sql). The claims
-- of a queue never add up to more than its limit together with the executing jobs of producers
-- holding none, so each producer keeps to its claim with no lock per fetch. A row not renewed
-- within its lease is dropped; its producer's executing jobs still count until they are rescued.
CREATE TABLE IF NOT EXISTS {prefix}.oban_bridge_limit_claims (
  queue text NOT NULL,
  producer text NOT NULL,
  claim integer NOT NULL,
  wanted boolean NOT NULL,
  renewed_at timestamp without time zone NOT NULL,
  PRIMARY KEY (queue, producer)
);
COMMENT ON TABLE {prefix}.oban_bridge_limit_claims IS 'oban_bridge shares of global limits, v1';

-- Serialise Python inserters of the same unique job until the first one commits. Two int4 keys
-- live in a different advisory key space from Elixir's single bigint key (basic.ex acquire_lock).
SELECT pg_advisory_xact_lock(hashtext('oban_bridge.unique'), hashtext(%(key)s))

-- The same lock, held by the session: across commit and the settle step, so a second Python
-- inserter only looks once the first has settled (and maybe withdrawn) its row.
SELECT pg_advisory_lock(hashtext('oban_bridge.unique'), hashtext(%(key)s))

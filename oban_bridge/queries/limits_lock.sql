-- Every node's fetch for a limited queue holds this lock until it commits (limited_fetch.sql).
-- The key is the prefix and queue: queues with the same name in two prefixes are two queues.
SELECT pg_advisory_xact_lock(hashtext('oban_bridge.limits'), hashtext(%(prefix)s || '.' || %(queue)s))

-- A producer is alive while some session of it holds this lock (shared: each of its connections
-- takes it). PostgreSQL drops it when the process dies, whatever killed it.
SELECT pg_advisory_lock_shared(hashtext('oban_bridge.producer'), hashtext(%(uuid)s))

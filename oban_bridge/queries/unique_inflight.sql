-- Transactions of other sessions holding a single-bigint advisory lock: an Elixir unique insert
-- holds one from before its duplicate check until it commits (basic.ex insert_unique/3).
SELECT l.pid, a.xact_start
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
  AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND a.xact_start IS NOT NULL

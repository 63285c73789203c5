-- oban_bridge producers (UUID version 8, producer.py) with jobs executing and no session holding
-- their presence lock (producer_presence.sql) right now. The lifeline rescues their jobs only once
-- it has seen them absent for a whole grace period (plugins/lifeline.py).
SELECT DISTINCT j.attempted_by[2] AS uuid
FROM {prefix}.oban_jobs AS j
WHERE j.state = 'executing'
  AND j.attempted_by[2] ~ '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-8'
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
      AND l.classid = (hashtext('oban_bridge.producer')::bigint & 4294967295)::oid
      AND l.objid = (hashtext(j.attempted_by[2])::bigint & 4294967295)::oid
  )

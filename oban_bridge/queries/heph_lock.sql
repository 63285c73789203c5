-- The lock HephaestusOban.AdvanceWorker takes: pg_advisory_xact_lock(:erlang.phash2(instance_id)).
SELECT pg_advisory_xact_lock(%(key)s::bigint)

-- lib/oban/notifiers/postgres.ex: one pg_notify per payload. Inside a transaction PostgreSQL
-- delivers them at commit and drops them on rollback, which is when Oban's listeners should hear.
SELECT pg_notify(%(channel)s, payload) FROM unnest(%(payloads)s::text[]) AS payload

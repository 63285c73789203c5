-- A chained job's upstream: the latest earlier job (lower id) of its partition, whose state and
-- scheduled_at decide whether the job runs, waits or halts (pro/chain.py). Every earlier job has
-- finished when this one has, so one row says all. Oban's GIN index on meta finds the partition.
SELECT state::text, scheduled_at AT TIME ZONE 'UTC'
FROM {prefix}.oban_jobs
WHERE meta @> %(partition)s::jsonb AND id < %(id)s
ORDER BY id DESC
LIMIT 1

-- A chained job's upstream: the latest earlier job (lower id) of its partition, whose state and
-- scheduled_at decide whether the job runs, waits or halts (pro/chain.py). Every earlier job has
-- finished when this one has, so one row says all — except for a link the chain ignores
-- (%(skip)s: discarded or cancelled under an `ignore` policy) that never waited for its own
-- upstream, being cancelled while it waited (by hand, by a deadline). Such links are passed over
-- to the job before them, so the chain keeps its order. A link cancelled by a halt
-- (`chain_halted`) did consult its upstream: it stands, and `ignore` runs after it. Oban's GIN
-- index on meta finds the partition.
SELECT state::text, scheduled_at AT TIME ZONE 'UTC'
FROM {prefix}.oban_jobs
WHERE meta @> %(partition)s::jsonb AND id < %(id)s
  AND NOT (state::text = ANY(%(skip)s::text[])
           AND position('chain_halted' IN coalesce(errors[array_length(errors, 1)] ->> 'error', '')) = 0)
ORDER BY id DESC
LIMIT 1

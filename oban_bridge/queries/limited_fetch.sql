-- The fetch of a queue with a global or rate limit (limits.py): ack_fetch_jobs.sql's fetch, held
-- to the limits. It runs in a transaction after this cycle's acks (ack_fetch_jobs.sql with no
-- demand: their jobs no longer count as running) and right after limits_lock.sql, which every
-- node's fetch for this queue takes: so it reads the other nodes' committed fetches (READ
-- COMMITTED takes this statement's snapshot after the lock was granted) and no one fetches
-- between its count and its commit. That is what makes a global limit exact at every instant,
-- without a counter that could drift from the table. The acks run before the lock, so the time
-- the lock is held (every node's fetches of the queue wait on it) is the fetch's alone.
--
-- {key} is the partition of a job row `j` (limits.py: a fixed expression over the worker and
-- the args keys as parameters; '[]' without a partition). Per partition:
--   running: the queue's executing jobs (global_limit);
--   recent:  the starts counted in the last RATE_BUCKETS + 1 sub-windows (rate_limit): any window
--            of one period lies within them, so no window ever holds more than `allowed` starts.
-- Partitions at their limit are skipped by the scan rather than stopping it: jobs of other
-- partitions behind them are fetched (no head-of-line blocking). The scan reads at most `scan`
-- available rows of the partitions still open (limits.py PARTITION_SCAN).
-- Starts are stamped with the database's clock, read after the lock: one clock for every node.
WITH clock AS MATERIALIZED (
  SELECT t AT TIME ZONE 'UTC' AS now,
         floor(extract(epoch FROM t) * 1000 / %(bucket_ms)s)::bigint AS bucket
  FROM clock_timestamp() AS t
),
running AS MATERIALIZED (
  SELECT {key} AS k, count(*) AS n
  FROM {prefix}.oban_jobs AS j
  WHERE %(global)s::int IS NOT NULL AND j.state = 'executing' AND j.queue = %(queue)s
  GROUP BY 1
),
recent AS MATERIALIZED (
  SELECT r.partition AS k, sum(r.starts) AS n
  FROM {prefix}.oban_bridge_rate_limits AS r, clock
  WHERE %(rate)s::int IS NOT NULL AND r.queue = %(queue)s AND r.bucket >= clock.bucket - %(buckets)s
  GROUP BY 1
),
closed AS MATERIALIZED (
  SELECT k FROM running WHERE n >= %(global)s
  UNION SELECT k FROM recent WHERE n >= %(rate)s
),
candidates AS MATERIALIZED (
  SELECT j.id, j.priority, j.scheduled_at, {key} AS k
  FROM {prefix}.oban_jobs AS j
  WHERE j.state = 'available' AND j.queue = %(queue)s AND {key} <> ALL (ARRAY(SELECT k FROM closed))
  ORDER BY j.priority ASC, j.scheduled_at ASC, j.id ASC
  LIMIT %(scan)s
),
chosen AS MATERIALIZED (
  SELECT c.id, c.k FROM (
    SELECT c.*, row_number() OVER (PARTITION BY c.k ORDER BY c.priority, c.scheduled_at, c.id) AS rn
    FROM candidates AS c
  ) AS c
  LEFT JOIN running AS g ON g.k = c.k
  LEFT JOIN recent AS w ON w.k = c.k
  WHERE (%(global)s::int IS NULL OR c.rn + coalesce(g.n, 0) <= %(global)s)
    AND (%(rate)s::int IS NULL OR c.rn + coalesce(w.n, 0) <= %(rate)s)
  ORDER BY c.priority, c.scheduled_at, c.id
  LIMIT %(demand)s
),
subset AS MATERIALIZED (
  SELECT j.id FROM {prefix}.oban_jobs AS j
  WHERE j.id IN (SELECT id FROM chosen) AND j.state = 'available'
  FOR UPDATE SKIP LOCKED
),
fetched AS (
  UPDATE {prefix}.oban_jobs AS j
  SET state = 'executing', attempted_at = (SELECT now FROM clock), attempted_by = %(attempted_by)s::text[],
      attempt = j.attempt + 1
  FROM subset
  WHERE j.id = subset.id AND j.attempt < j.max_attempts
  RETURNING j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
            j.inserted_at AT TIME ZONE 'UTC', j.scheduled_at AT TIME ZONE 'UTC',
            j.attempted_at AT TIME ZONE 'UTC', j.completed_at AT TIME ZONE 'UTC', j.attempted_by,
            j.discarded_at AT TIME ZONE 'UTC', j.priority, j.tags, j.meta, j.cancelled_at AT TIME ZONE 'UTC'
),
counted AS (
  INSERT INTO {prefix}.oban_bridge_rate_limits AS r (queue, partition, bucket, starts)
  SELECT %(queue)s, chosen.k, (SELECT bucket FROM clock), count(*)
  FROM fetched JOIN chosen ON chosen.id = fetched.id
  WHERE %(rate)s::int IS NOT NULL
  GROUP BY chosen.k
  ON CONFLICT (queue, partition, bucket) DO UPDATE SET starts = r.starts + excluded.starts
),
expired AS (
  DELETE FROM {prefix}.oban_bridge_rate_limits AS r USING clock
  WHERE %(rate)s::int IS NOT NULL AND r.queue = %(queue)s AND r.bucket < clock.bucket - %(buckets)s
)
SELECT * FROM fetched

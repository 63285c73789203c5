-- A producer's share of a queue's global limit (limits.py: a global limit over the whole queue,
-- without partitions or a rate limit), renewed right after limits_lock.sql in one transaction:
-- claims change one at a time and each sees the others' committed ones.
--
-- The claims and the executing jobs of producers that hold none (an Elixir node, a producer whose
-- claim lapsed, a dead node's orphans until the lifeline rescues them) never add up to more than
-- the limit. A producer fetches only up to its claim, counting its in-flight fetches as the local
-- limit does, so the queue's executing jobs never exceed the limit with no lock per fetch.
--
-- Fair shares: a producer that would run more than it holds is `wanted`; with k producers
-- wanting, each aims at ceil(limit / k). One above its share keeps a claim covering what it runs
-- (%(floor)s) and fetches nothing more until it is down to its share; the slots it frees go to
-- the others as they renew. Alone, a producer may hold the whole limit.
WITH clock AS MATERIALIZED (
  SELECT clock_timestamp() AT TIME ZONE 'UTC' AS now
),
expired AS (
  DELETE FROM {prefix}.oban_bridge_limit_claims AS c USING clock
  WHERE c.queue = %(queue)s AND c.renewed_at < clock.now - make_interval(secs => %(lease)s)
),
others AS MATERIALIZED (
  SELECT c.producer, c.claim, c.wanted
  FROM {prefix}.oban_bridge_limit_claims AS c, clock
  WHERE c.queue = %(queue)s AND c.producer <> %(producer)s
    AND c.renewed_at >= clock.now - make_interval(secs => %(lease)s)
),
unclaimed AS MATERIALIZED (
  SELECT count(*) AS n
  FROM {prefix}.oban_jobs AS j
  WHERE j.state = 'executing' AND j.queue = %(queue)s AND j.attempted_by[2] IS DISTINCT FROM %(producer)s
    AND j.attempted_by[2] NOT IN (SELECT producer FROM others)
),
-- What the producer can use: no more than it runs plus the available jobs (an idle poll claims
-- nothing and leaves no row).
wants AS MATERIALIZED (
  SELECT least(%(want)s, %(floor)s + (SELECT count(*) FROM (
           SELECT 1 FROM {prefix}.oban_jobs AS j WHERE j.state = 'available' AND j.queue = %(queue)s
           LIMIT %(want)s) AS a))::int AS n
),
decided AS MATERIALIZED (
  SELECT greatest(%(floor)s, least(target, room)) AS claim, least(target, room) AS cap, want, target
  FROM (
    SELECT %(global)s - coalesce((SELECT sum(claim) FROM others), 0) - (SELECT n FROM unclaimed) AS room,
           least((SELECT n FROM wants),
                 ceil(%(global)s::numeric / (1 + (SELECT count(*) FROM others WHERE wanted))))::int AS target,
           (SELECT n FROM wants) AS want
  ) AS d
),
kept AS (
  INSERT INTO {prefix}.oban_bridge_limit_claims AS c (queue, producer, claim, wanted, renewed_at)
  SELECT %(queue)s, %(producer)s, decided.claim, decided.want > decided.claim, clock.now
  FROM decided, clock
  WHERE decided.claim > 0 OR decided.want > 0
  ON CONFLICT (queue, producer) DO UPDATE
  SET claim = excluded.claim, wanted = excluded.wanted, renewed_at = excluded.renewed_at
),
dropped AS (
  DELETE FROM {prefix}.oban_bridge_limit_claims AS c USING decided
  WHERE c.queue = %(queue)s AND c.producer = %(producer)s AND decided.claim <= 0 AND decided.want = 0
)
SELECT greatest(cap, 0) AS cap, greatest(claim, 0) AS claim, want, target FROM decided

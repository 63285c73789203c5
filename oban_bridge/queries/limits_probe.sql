-- After a limited fetch, in its transaction: whether available jobs remain that the limits held
-- back (the producer then fetches again when a slot or window frees, rather than sleeping until
-- an insert), and when the oldest counted start leaves the rate window.
SELECT EXISTS (
         SELECT 1 FROM {prefix}.oban_jobs WHERE state = 'available' AND queue = %(queue)s
       ) AS more,
       (SELECT (min(r.bucket) + %(buckets)s + 1) * %(bucket_ms)s - extract(epoch FROM clock_timestamp()) * 1000
          FROM {prefix}.oban_bridge_rate_limits AS r
         WHERE %(rate)s::int IS NOT NULL AND r.queue = %(queue)s) AS rate_wait_ms

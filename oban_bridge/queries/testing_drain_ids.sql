-- oban_bridge.testing's drains (lib/oban/queues/drainer.ex): the jobs one pass runs, in the order a
-- producer would fetch them (priority, scheduled_at, id). A pass runs the jobs available when it
-- starts; jobs they insert wait for the next pass (`with_recursion`), as in Oban. `queue` NULL:
-- every queue (drain_jobs).
SELECT id FROM {prefix}.oban_jobs
WHERE state = 'available' AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY priority ASC, scheduled_at ASC, id ASC
LIMIT %(limit)s

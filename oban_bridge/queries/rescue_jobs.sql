-- lib/oban/engines/basic.ex rescue_jobs/3 (the Lifeline plugin): jobs left executing since before
-- `before` go back to available, or to discarded when they have no attempts left. Unless the node
-- was told to act on every job (`everything`), only jobs attempted by this instance's producers
-- (`uuids`): an Elixir app's jobs, and another Python instance's, are their own Lifeline's to
-- rescue, or not.
UPDATE {prefix}.oban_jobs
SET state = CASE WHEN attempt < max_attempts THEN 'available'::{prefix}.oban_job_state
                 ELSE 'discarded'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN attempt < max_attempts THEN discarded_at ELSE %(now)s END
WHERE state = 'executing' AND attempted_at < %(before)s
  AND (%(everything)s OR attempted_by[2] = ANY(%(uuids)s::text[]))
RETURNING id, queue, state, worker

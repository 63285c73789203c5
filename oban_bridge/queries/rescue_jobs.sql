-- lib/oban/engines/basic.ex rescue_jobs/3 (the Lifeline plugin): jobs left executing since before
-- `before` go back to available, or to discarded when they have no attempts left.
UPDATE {prefix}.oban_jobs
SET state = CASE WHEN attempt < max_attempts THEN 'available'::{prefix}.oban_job_state
                 ELSE 'discarded'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN attempt < max_attempts THEN discarded_at ELSE %(now)s END
WHERE state = 'executing' AND attempted_at < %(before)s
RETURNING id, queue, state

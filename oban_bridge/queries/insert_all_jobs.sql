-- Many jobs in one statement (Repo.insert_all in basic.ex `insert_all_jobs/3`): one array per
-- column, unnested in input order so ids ascend with the caller's list. Tags travel as JSON
-- arrays because a SQL array of arrays must be rectangular.
INSERT INTO {prefix}.oban_jobs
  (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
SELECT s::{prefix}.oban_job_state, q, w, a::jsonb, m::jsonb,
       ARRAY(SELECT jsonb_array_elements_text(t::jsonb)), p, ma,
       COALESCE(sa, timezone('UTC', now()))
FROM unnest(%(state)s::text[], %(queue)s::text[], %(worker)s::text[], %(args)s::text[],
            %(meta)s::text[], %(tags)s::text[], %(priority)s::int[], %(max_attempts)s::int[],
            %(scheduled_at)s::timestamp[])
     WITH ORDINALITY AS x(s, q, w, a, m, t, p, ma, sa, n)
ORDER BY n
RETURNING *

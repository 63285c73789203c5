COPY {prefix}.oban_jobs (id, state, queue, worker, args, meta, tags, priority, max_attempts, inserted_at, scheduled_at) FROM STDIN

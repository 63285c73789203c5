-- oban_bridge.testing's all_enqueued/assert_enqueued (Oban.Testing base_query/1): jobs that are
-- enqueued — available, scheduled or suspended — newest first, narrowed by whichever filters are
-- given (a NULL parameter is no filter). Timestamps match within a window (each field's delta,
-- default 1 s either side), as Oban's do; args and meta containment is checked in Python (`_` or ANY
-- as a wildcard), as Oban checks it in Elixir after the query.
SELECT id, state, queue, worker, args, errors, attempt, max_attempts,
       inserted_at AT TIME ZONE 'UTC', scheduled_at AT TIME ZONE 'UTC',
       attempted_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', attempted_by,
       discarded_at AT TIME ZONE 'UTC', priority, tags, meta, cancelled_at AT TIME ZONE 'UTC'
FROM {prefix}.oban_jobs
WHERE state IN ('available', 'scheduled', 'suspended')
  AND (%(id)s::bigint IS NULL OR id = %(id)s::bigint)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(state)s::text IS NULL OR state::text = %(state)s::text)
  AND (%(priority)s::int IS NULL OR priority = %(priority)s::int)
  AND (%(attempt)s::int IS NULL OR attempt = %(attempt)s::int)
  AND (%(max_attempts)s::int IS NULL OR max_attempts = %(max_attempts)s::int)
  AND (%(tags)s::text[] IS NULL OR tags = %(tags)s::text[])
  AND (%(attempted_by)s::text[] IS NULL OR attempted_by = %(attempted_by)s::text[])
  AND (%(scheduled_at)s::timestamp IS NULL
       OR scheduled_at BETWEEN %(scheduled_at)s::timestamp - %(scheduled_at_delta)s::interval AND %(scheduled_at)s::timestamp + %(scheduled_at_delta)s::interval)
  AND (%(inserted_at)s::timestamp IS NULL
       OR inserted_at BETWEEN %(inserted_at)s::timestamp - %(inserted_at_delta)s::interval AND %(inserted_at)s::timestamp + %(inserted_at_delta)s::interval)
  AND (%(attempted_at)s::timestamp IS NULL
       OR attempted_at BETWEEN %(attempted_at)s::timestamp - %(attempted_at_delta)s::interval AND %(attempted_at)s::timestamp + %(attempted_at_delta)s::interval)
  AND (%(completed_at)s::timestamp IS NULL
       OR completed_at BETWEEN %(completed_at)s::timestamp - %(completed_at_delta)s::interval AND %(completed_at)s::timestamp + %(completed_at_delta)s::interval)
  AND (%(discarded_at)s::timestamp IS NULL
       OR discarded_at BETWEEN %(discarded_at)s::timestamp - %(discarded_at_delta)s::interval AND %(discarded_at)s::timestamp + %(discarded_at_delta)s::interval)
  AND (%(cancelled_at)s::timestamp IS NULL
       OR cancelled_at BETWEEN %(cancelled_at)s::timestamp - %(cancelled_at_delta)s::interval AND %(cancelled_at)s::timestamp + %(cancelled_at_delta)s::interval)
ORDER BY id DESC

-- Take back our own duplicate, but only while no producer has touched it.
DELETE FROM {prefix}.oban_jobs
WHERE id = %(id)s AND state IN ('available', 'scheduled') AND attempt = 0
RETURNING id

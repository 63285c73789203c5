-- lib/oban/engines/basic.ex check_available/1: queues with available jobs, to be poked with an
-- insert notification after staging (lib/oban/stager.ex notify_queues/1).
SELECT DISTINCT queue FROM {prefix}.oban_jobs WHERE state = 'available' AND queue IS NOT NULL

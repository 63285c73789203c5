"""badge_forge: the Elixir app enqueues badge renders, Python renders them.

Elixir side (any Elixir node with Oban on the same database):

    Oban.Job.new(%{"id" => "7bfb7c39", "name" => "Alasdair"},
      worker: "badge_forge.generator.GenerateBadge", queue: "badges")
    |> Oban.insert()

Python side:

    oban-bridge start --module examples.badge_forge.jobs --queues badges:10

The job's result shows up in the row like any Elixir job's: completed, or retryable with the
error in `errors`, visible in Oban Web.
"""

from __future__ import annotations

from oban_bridge import Job, Snooze, worker


@worker("badge_forge.generator.GenerateBadge", queue="badges", max_attempts=5)
class GenerateBadge:
    def process(self, job: Job) -> None | Snooze:
        name = job.args.get("name")
        if not name:
            raise ValueError("a badge needs a name")
        svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{name}</text></svg>'
        with open(f"/tmp/badge-{job.args.get('id', job.id)}.svg", "w") as out:
            out.write(svg)
        return None

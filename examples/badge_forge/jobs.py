"""badge_forge: the Elixir app enqueues badge renders, Python renders them.

Elixir side (any Elixir node with Oban on the same database):

    Oban.Job.new(%{"id" => "7bfb7c39", "name" => "Alasdair"},
      worker: "badge_forge.generator.GenerateBadge", queue: "badges")
    |> Oban.insert()

Python side:

    oban-bridge start --module examples.badge_forge.jobs --queues badges:10

The job's result shows up in the row like any Elixir job's: completed, or retryable with the
error in `errors`, visible in Oban Web.

`ForgeBatch` fans a batch out into one GenerateBadge job per attendee and schedules a reminder
for the Elixir app's mailer a day later. Its tests (test_jobs.py) use oban_bridge.testing only.
"""

from __future__ import annotations

import os

from oban_bridge import Job, ObanBridge, Snooze, worker

# The app's client: it connects on first use (DATABASE_URL, else the embedded PostgreSQL).
# Tests swap in the `oban` fixture's client, in manual mode.
bridge = ObanBridge()

OUT_DIR = os.environ.get("BADGE_FORGE_OUT", "/tmp")


@worker("badge_forge.generator.GenerateBadge", queue="badges", max_attempts=5)
class GenerateBadge:
    def process(self, job: Job) -> None | Snooze:
        name = job.args.get("name")
        if not name:
            raise ValueError("a badge needs a name")
        svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{name}</text></svg>'
        with open(os.path.join(OUT_DIR, f"badge-{job.args.get('id', job.id)}.svg"), "w") as out:
            out.write(svg)
        return None


@worker("badge_forge.generator.ForgeBatch", queue="badges")
def forge_batch(job: Job) -> int:
    attendees = job.args["attendees"]
    bridge.insert_all(GenerateBadge.new({"id": a["id"], "name": a["name"]}) for a in attendees)  # type: ignore[attr-defined]
    # The Elixir app mails the reminder: its worker is named as Elixir names it.
    bridge.insert(Job.new("BadgeForge.Mailer.Reminder", {"batch": job.args["batch"]}, queue="mailers",
                          schedule_in=24 * 3600))
    return len(attendees)


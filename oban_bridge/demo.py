"""The workers behind `oban-bridge demo`: the badge_forge example, where an Elixir app enqueues
badge renders by string worker name and Python renders them."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from .job import Job
from .worker import Error, worker

BADGE = """<svg xmlns="http://www.w3.org/2000/svg" width="220" height="60">
<rect width="220" height="60" rx="8" fill="#{color}"/>
<text x="110" y="36" font-size="18" text-anchor="middle" fill="#fff">{name}</text>
</svg>"""


@worker("badge_forge.generator.GenerateBadge", queue="badges", max_attempts=3)
class GenerateBadge:
    """Renders a badge; about one job in fifty fails once, to show retries."""

    def process(self, job: Job) -> Any:
        name = str(job.args.get("name", "anonymous"))
        if job.attempt == 1 and job.args.get("flaky"):
            return Error("the badge printer jammed")
        color = hashlib.sha1(name.encode()).hexdigest()[:6]
        return {"svg_bytes": len(BADGE.format(color=color, name=name))}

    def backoff(self, job: Job) -> int:
        """A jammed printer is cleared in a second; Oban's default would wait 17 s."""
        return 1


NAMES = ["Alasdair", "Brígida", "Chen", "Dagny", "Emeka", "Farah", "Gustavo", "Hana", "Ilse", "José"]


def demo_jobs(count: int) -> list[Job]:
    """Jobs as the Elixir app would insert them: a string worker name, JSON args, queue badges."""
    rng = random.Random(7)
    return [
        Job.new("badge_forge.generator.GenerateBadge",
                {"id": f"{i:08x}", "name": rng.choice(NAMES), "flaky": rng.random() < 0.02},
                queue="badges")
        for i in range(count)
    ]

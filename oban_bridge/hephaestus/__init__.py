"""Python steps inside Hephaestus workflow instances (lucas-stellet/hephaestus_oban).

See README "Hephaestus" and examples/hephaestus_step for the Elixir side.
"""

from .handover import Handover, HandoverError, HandoverResult, Instance
from .resume import resume, schedule_resume
from .steps import STEP_QUEUE, STEP_WORKER, Async, StepContext, StepResult, step

__all__ = [
    "Async",
    "Handover",
    "HandoverError",
    "HandoverResult",
    "Instance",
    "STEP_QUEUE",
    "STEP_WORKER",
    "StepContext",
    "StepResult",
    "resume",
    "schedule_resume",
    "step",
]

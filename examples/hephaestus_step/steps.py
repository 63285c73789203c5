"""The Python side of MyApp.Steps.RenderPdf (see render_pdf.ex beside this file).

Run it with:  oban-bridge start --module examples.hephaestus_step.steps --queues hephaestus_python:5
"""

from __future__ import annotations

from oban_bridge.hephaestus import StepContext, StepResult, step


@step("Elixir.MyApp.Steps.RenderPdf", events=["rendered", "failed"], context_keys=["pdf_url", "pages"])
def render_pdf(ctx: StepContext) -> StepResult:
    """Runs once the instance waits at the step; returns the event and context updates that the
    Elixir AdvanceWorker applies. Raising retries; out of attempts, the workflow fails as
    Hephaestus fails it. Returning Async() leaves the step waiting for a later resume()."""
    user_id = ctx.initial["user_id"]
    checked = ctx.steps.get("validate_user", {}).get("checked", False)
    if not checked:
        return StepResult("failed")
    url = f"s3://badges/{ctx.instance_id.replace('::', '/')}.pdf"  # render here
    return StepResult("rendered", context={"pdf_url": url, "pages": 1 + user_id % 3})

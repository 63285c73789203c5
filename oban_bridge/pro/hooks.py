"""Worker hooks (Oban.Pro.Worker): `before_new(args, opts)`, `before_process(job)`,
`after_process(state, job, result)`; implicit (methods of the worker), explicit (`hooks=[...]`)
and global (`attach_hook`), run in that order. after_process is for side effects only: its
exceptions are logged, never fail the job."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("oban_bridge.hooks")

_global: list[Any] = []


def attach_hook(hook: Any) -> None:
    if hook not in _global:
        _global.append(hook)


def detach_hook(hook: Any) -> None:
    if hook in _global:
        _global.remove(hook)


def chain(instance: Any, explicit: Iterable[Any]) -> list[Any]:
    return [h for h in ([instance] if instance is not None else []) + list(explicit) + list(_global)]


def before_new(hooks: list[Any], args: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for hook in hooks:
        fn = getattr(hook, "before_new", None)
        if callable(fn):
            out = fn(args, opts)
            if out is not None:
                args, opts = out
    return args, opts


def before_process(hooks: list[Any], job: Any) -> Any:
    for hook in hooks:
        fn = getattr(hook, "before_process", None)
        if callable(fn):
            out = fn(job)
            if out is not None:
                job = out
    return job


# executor events -> the after_process states of the Pro docs
STATES = {"success": "complete", "cancelled": "cancel", "discard": "discard", "exhausted": "discard",
          "failure": "error", "snoozed": "snooze"}


def after_process(hooks: list[Any], event: str, job: Any, result: Any) -> None:
    state = STATES.get(event, event)
    for hook in hooks:
        fn = getattr(hook, "after_process", None)
        if callable(fn):
            try:
                fn(state, job, result)
            except Exception:  # noqa: BLE001 - hooks never fail a job
                log.exception("after_process hook failed", extra={"job_id": getattr(job, "id", None)})

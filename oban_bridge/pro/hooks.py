"""Worker hooks (Oban.Pro.Worker): `before_new(args, opts)`, `before_process(job)`,
`after_process(state, job[, result])`; implicit (methods of the worker), explicit (`hooks=[...]`)
and global (`attach_hook`, for every worker), run in that order.

As the Pro docs define them:
- `before_new` returns `(args, opts)` to go on with, or `Error(reason)` to refuse the job
  (a `ValidationError`, as Pro marks the changeset invalid); None changes nothing.
- `before_process` gets the job as `process` will (decrypted, cast) and returns a job to go on
  with, or `Cancel(reason)` / `Error(reason)` to cancel the job or record an error instead of
  running it; None changes nothing.
- `after_process` is for side effects: it gets the state (`complete`, `cancel`, `discard`,
  `error`, `snooze`), the job as `process` saw it, and — when it takes a third argument — the
  value `process` returned (None when it raised; the error is in `job.unsaved_error`). Its
  exceptions are logged, never fail the job.
Hooks are plain functions and may block: they run where the job's own code runs — a job thread for
`def` workers, a worker thread for `async def` ones — never on the event loop every queue shares.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ValidationError

log = logging.getLogger("oban_bridge.hooks")

_global: list[Any] = []


def attach_hook(hook: Any) -> None:
    """Run `hook` for every worker's jobs (Pro: every Pro worker; here every worker is one)."""
    if hook not in _global:
        _global.append(hook)


def detach_hook(hook: Any) -> None:
    if hook in _global:
        _global.remove(hook)


def chain(instance: Any, explicit: Iterable[Any]) -> list[Any]:
    return [*([instance] if instance is not None else []), *explicit, *_global]


def for_spec(spec: Any) -> Sequence[Any]:
    """The hooks of a worker's jobs: its own and explicit ones (Pro options), then the global ones.
    Empty for a plain worker while no hook is attached, which keeps its path free of hooks."""
    pro = spec.pro
    if pro is not None:
        return pro.all_hooks()  # type: ignore[no-any-return]
    return tuple(_global) if _global else ()


def _name(hook: Any) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__qualname__


def before_new(hooks: Sequence[Any], args: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..worker import Error

    for hook in hooks:
        fn = getattr(hook, "before_new", None)
        if not callable(fn):
            continue
        out = fn(args, opts)
        if out is None:
            continue
        if isinstance(out, Error):
            raise ValidationError("before_new", f"{_name(hook)} refused the job: {out.reason}")
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping) and isinstance(out[1], Mapping):
            args, opts = dict(out[0]), dict(out[1])
            continue
        raise ValidationError("before_new", f"{_name(hook)} returned {out!r}; expected (args, opts), None or "
                                            "Error(reason)")
    return args, opts


def before_process(hooks: Sequence[Any], job: Any) -> Any:
    """The job to run, or the `Cancel`/`Error` a hook returned instead. Runs on the job's thread."""
    from ..job import Job
    from ..worker import Cancel, Error

    for hook in hooks:
        fn = getattr(hook, "before_process", None)
        if not callable(fn):
            continue
        out = fn(job)
        if out is None:
            continue
        if isinstance(out, Job):
            job = out
        elif isinstance(out, (Cancel, Error)):
            return out
        else:
            raise TypeError(f"before_process hook {_name(hook)} returned {out!r}; expected the job, None, "
                            "Cancel(reason) or Error(reason)")
    return job


def has(hooks: Sequence[Any], name: str) -> bool:
    return any(callable(getattr(h, name, None)) for h in hooks)


# executor events -> the after_process states of the Pro docs
STATES = {"success": "complete", "cancelled": "cancel", "discard": "discard", "exhausted": "discard",
          "failure": "error", "snoozed": "snooze"}

_takes_result: dict[Any, bool] = {}


def _wants_result(fn: Any) -> bool:
    """`after_process(state, job, result)` or the two-argument `after_process(state, job)` the
    docs' ErrorHook example also defines."""
    target = getattr(fn, "__func__", fn)
    known = _takes_result.get(target)
    if known is None:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            known = True
        else:
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            known = any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 3
        _takes_result[target] = known
    return known


def after_process(hooks: Sequence[Any], event: str, job: Any, result: Any) -> None:
    state = STATES.get(event, event)
    for hook in hooks:
        fn = getattr(hook, "after_process", None)
        if callable(fn):
            try:
                if _wants_result(fn):
                    fn(state, job, result)
                else:
                    fn(state, job)
            except Exception:  # noqa: BLE001 - hooks never fail a job
                log.exception("after_process hook failed",
                              extra={"job_id": getattr(job, "id", None), "hook": _name(hook)})

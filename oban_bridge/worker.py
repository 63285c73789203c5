"""Python workers, registered by the string name Oban stores in `oban_jobs.worker`.

`@worker("badge_forge.generator.GenerateBadge", queue="badges")` on a class with
`process(self, job)` or on a plain function taking the job. `async def` runs on the event loop;
plain `def` runs in a thread pool so blocking libraries work. What `process` returns mirrors an
Elixir worker's `perform/1` result: anything → completed; `Snooze(s)` → `{:snooze, s}`;
`Cancel(reason)`, `Discard(reason)`, `Error(reason)` → `{:cancel | :discard | :error, reason}`; an
exception retries with backoff like a raise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from .backoff import default_backoff
from .errors import ValidationError
from .job import Job, worker_name
from .pro.options import ProOptions

W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run again after `seconds` (Oban 2.23.1: `max_attempts` goes up by one, attempt stays)."""

    seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or self.seconds < 0:
            raise ValidationError("snooze", f"expected a non-negative whole number of seconds, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: Any = None


@dataclass(frozen=True, slots=True)
class Discard:
    reason: Any = None


@dataclass(frozen=True, slots=True)
class Error:
    """`{:error, reason}`: a failed attempt without an exception; retried with backoff."""

    reason: Any = None


Result = Snooze | Cancel | Discard | Error


@dataclass(slots=True)
class WorkerSpec:
    name: str
    target: Any
    queue: str = "default"
    max_attempts: int = 20
    priority: int | None = None
    tags: tuple[str, ...] = ()
    unique: Any = None
    replace: Any = None
    aliases: tuple[str, ...] = ()
    perform: Callable[[Job], Any] = field(default=lambda job: None)
    is_async: bool = False
    backoff_fn: Callable[[Job], int] | None = None
    timeout_fn: Callable[[Job], float | None] | None = None
    recorded_limit: int | None = None  # characters stored; None: return values are not recorded
    recorded_to: str = "return"  # the meta key the recorded value goes to (Pro's `to:`)
    pro: Any = None  # pro.options.ProOptions when any Pro feature is on
    isolation: str = "thread"  # "process": each attempt in a child process that can be killed

    def backoff(self, job: Job) -> int:
        if self.backoff_fn is not None:
            return int(self.backoff_fn(job))
        return default_backoff(job.attempt, job.max_attempts)

    def timeout(self, job: Job) -> float | None:
        """Seconds, or None for no limit (Oban's default `:infinity`)."""
        return None if self.timeout_fn is None else self.timeout_fn(job)

    def new(self, args: Mapping[str, Any] | None = None, **opts: Any) -> Job:
        """Build a job for this worker with the decorator's options as defaults (`Worker.new/2`)."""
        defaults: dict[str, Any] = {"queue": self.queue, "max_attempts": self.max_attempts}
        for key, value in (("priority", self.priority), ("tags", list(self.tags) or None),
                           ("unique", self.unique), ("replace", self.replace)):
            if value is not None:
                defaults[key] = value
        merged = {**defaults, **opts}
        if self.pro is None:
            if "deadline" in merged:
                raise ValidationError("deadline", f"worker {self.name} has no deadline option to override")
            from .pro import hooks

            if hooks._global:  # global hooks are every worker's, before_new included
                if args is not None and not isinstance(args, Mapping):
                    raise ValidationError("args", f"expected a JSON object (a mapping), got {type(args).__name__}")
                args, merged = hooks.before_new(list(hooks._global), dict(args or {}), merged)
            return Job.new(self.name, args, **merged)
        if args is not None and not isinstance(args, Mapping):
            raise ValidationError("args", f"expected a JSON object (a mapping), got {type(args).__name__}")
        new_args, merged, seconds = self.pro.on_new(self.name, dict(args or {}), merged)
        return self.pro.finish_new(Job.new(self.name, new_args, **merged), seconds)  # type: ignore[no-any-return]


_registry: dict[str, WorkerSpec] = {}


def registry() -> Mapping[str, WorkerSpec]:
    return _registry


def lookup(name: str) -> WorkerSpec | None:
    return _registry.get(name)


def _bind(target: Any) -> tuple[Callable[[Job], Any], bool, Any]:
    """The callable that performs a job, whether it is a coroutine, and the instance (classes
    are instantiated once, like an Elixir worker module: per-job state belongs in the job)."""
    if inspect.isclass(target):
        method = getattr(target, "process", None)
        if method is None:
            raise TypeError(f"worker class {target.__qualname__} needs a process(self, job) method")
        instance: Any = target()
        return instance.process, inspect.iscoroutinefunction(method), instance
    if callable(target):
        return target, inspect.iscoroutinefunction(target), None
    raise TypeError(f"@worker decorates a class or a function, not {target!r}")


def _hook(instance: Any, name: str) -> Callable[[Job], Any] | None:
    fn = getattr(instance, name, None) if instance is not None else None
    return fn if callable(fn) else None


def _recorded(recorded: Any) -> tuple[int | None, str]:
    """Pro's `recorded: true | [limit: n, to: key, safe_decode: bool]`: the limit (characters of
    the stored value, after compression and encoding) and the meta key. `safe_decode` is accepted
    and changes nothing: Python's decoder never creates atoms or functions, so it is always safe."""
    from .recorded import DEFAULT_LIMIT, RESERVED

    if recorded is False or recorded is None:
        return None, "return"
    if recorded is True:
        return DEFAULT_LIMIT, "return"
    if not isinstance(recorded, Mapping) or set(recorded) - {"limit", "to", "safe_decode"}:
        raise ValidationError("recorded", f"expected True or {{'limit': n, 'to': key, 'safe_decode': bool}}, "
                                          f"got {recorded!r}")
    limit = recorded.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValidationError("recorded.limit", f"expected a positive number of characters, got {limit!r}")
    to = recorded.get("to", "return")
    if not isinstance(to, str) or not to or to in RESERVED:
        raise ValidationError("recorded.to", f"expected a meta key other than {', '.join(sorted(RESERVED))}, got {to!r}")
    if not isinstance(recorded.get("safe_decode", True), bool):
        raise ValidationError("recorded.safe_decode", f"expected true or false, got {recorded['safe_decode']!r}")
    return limit, to


def worker(
    name: str | None = None,
    *,
    queue: str = "default",
    max_attempts: int = 20,
    priority: int | None = None,
    tags: Iterable[str] = (),
    unique: Any = None,
    replace: Any = None,
    aliases: Iterable[str] = (),
    backoff: Callable[[Job], int] | None = None,
    timeout: float | timedelta | Callable[[Job], float | None] | None = None,
    recorded: bool | Mapping[str, Any] = False,
    args_schema: Mapping[str, Any] | None = None,
    chain: Any = None,
    deadline: Any = None,
    hooks: Iterable[Any] = (),
    encrypted: Mapping[str, Any] | None = None,
    isolation: str = "thread",
) -> Callable[[W], W]:
    """Register a Python worker under `name` (default: its dotted Python path).

    `isolation="process"` runs each attempt in a child process (see isolation.py), killed when its
    timeout passes or it is cancelled, as Elixir kills a job's process; the default runs plain
    `def` jobs on threads, which can only be asked to stop (`job.cancelled`)."""

    recorded_limit, recorded_to = _recorded(recorded)
    if isolation not in ("thread", "process"):
        raise ValidationError("isolation", f"expected 'thread' or 'process', got {isolation!r}")

    def decorate(target: W) -> W:
        registered = worker_name(name) if name is not None else worker_name(target)
        # Validate the defaults once, here, rather than on every Worker.new.
        Job.new(registered, {}, queue=queue, max_attempts=max_attempts, priority=priority,
                tags=list(tags), unique=unique, replace=replace)
        perform, is_async, instance = _bind(target)
        if isolation == "process" and getattr(target, "__module__", "__main__") == "__main__":
            raise ValidationError("isolation", f"worker {registered}: isolation='process' needs the worker in an "
                                               "importable module (the child process imports it), not in __main__")
        timeout_fn: Callable[[Job], float | None] | None
        if callable(timeout):
            timeout_fn = timeout
        elif timeout is None:
            timeout_fn = _hook(instance, "timeout")
        else:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
            timeout_fn = lambda job: seconds  # noqa: E731
        spec = WorkerSpec(
            name=registered,
            target=target,
            queue=queue,
            max_attempts=max_attempts,
            priority=priority,
            tags=tuple(tags),
            unique=unique,
            replace=replace,
            aliases=tuple(aliases),
            perform=perform,
            is_async=is_async,
            backoff_fn=backoff or _hook(instance, "backoff"),
            timeout_fn=timeout_fn,
            recorded_limit=recorded_limit,
            recorded_to=recorded_to,
            isolation=isolation,
            pro=ProOptions.build(args_schema=args_schema, chain=chain, deadline=deadline, hooks_=hooks,
                                 encrypted_=encrypted, instance=instance),
        )
        for key in (registered, *spec.aliases):
            existing = _registry.get(key)
            if existing is not None and existing.target is not target:
                raise ValueError(f"worker name {key!r} is already registered to {existing.target!r}")
            _registry[key] = spec
        target.__oban_worker__ = registered  # type: ignore[attr-defined]
        target.new = spec.new  # type: ignore[attr-defined]
        target.__oban_spec__ = spec  # type: ignore[attr-defined]
        return target

    return decorate

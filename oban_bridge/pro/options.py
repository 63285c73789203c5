"""Where the Pro features meet the worker: on `Worker.new` (hooks, structured validation, chain
id, deadline, encryption, in that order) and around `process` (deadline, chain, decryption, cast,
before/after hooks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..job import Job
from ..term import Atom
from . import chain as chain_mod
from . import deadline as deadline_mod
from . import encrypted, hooks, structured


@dataclass(slots=True)
class ProOptions:
    schema: dict[str, structured.Field] | None = None
    chain: chain_mod.Chain | None = None
    deadline: tuple[int, bool] | None = None
    hooks: list[Any] = field(default_factory=list)
    key: Callable[[], str | bytes] | None = None
    instance: Any = None

    @classmethod
    def build(cls, *, args_schema: Any, chain: Any, deadline: Any, hooks_: Any, encrypted_: Any,
              instance: Any) -> ProOptions | None:
        key = None
        if encrypted_:
            if not isinstance(encrypted_, dict) or not callable(encrypted_.get("key")) or set(encrypted_) != {"key"}:
                from ..errors import ValidationError

                raise ValidationError("encrypted", "expected {'key': callable returning a base64 32-byte key}")
            key = encrypted_["key"]
        options = cls(
            schema=dict(args_schema) if args_schema else None,
            chain=chain_mod.parse(chain),
            deadline=deadline_mod.parse(deadline) if deadline is not None else None,
            hooks=list(hooks_ or []),
            key=key,
            instance=instance,
        )
        has_hooks = any(callable(getattr(instance, n, None)) for n in ("before_new", "before_process", "after_process"))
        if not (options.schema or options.chain or options.deadline or options.hooks or key or has_hooks):
            return None
        return options

    def all_hooks(self) -> list[Any]:
        return hooks.chain(self.instance, self.hooks)

    def on_new(self, worker: str, args: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int | None]:
        args, opts = hooks.before_new(self.all_hooks(), dict(args), dict(opts))
        seconds = None
        if "deadline" in opts and self.deadline is None:
            from ..errors import ValidationError

            raise ValidationError("deadline", f"worker {worker} has no deadline option to override")
        if self.deadline is not None:
            seconds = self.deadline[0]
            if "deadline" in opts:
                seconds = deadline_mod.parse(opts.pop("deadline"))[0]
        if self.schema is not None:
            args = structured.validate(self.schema, args)
        if self.chain is not None:
            meta = dict(opts.get("meta") or {})
            key = encrypted.key_bytes(self.key) if self.key is not None else None
            meta[chain_mod.META_KEY] = self.chain.chain_id(worker, args, meta, key=key)
            opts["meta"] = meta
        if self.key is not None:
            args = encrypted.encrypt(args, self.key)
        return args, opts, seconds

    def finish_new(self, job: Job, seconds: int | None) -> Job:
        if seconds is not None:
            job.meta = deadline_mod.stamp(job.meta, job.scheduled_at, seconds)
        return job

    def expired(self, job: Job) -> bool:
        at = deadline_mod.deadline_of(job.meta)
        return at is not None and datetime.now(timezone.utc) > at

    def remaining(self, job: Job) -> float | None:
        if self.deadline is None or not self.deadline[1]:
            return None
        at = deadline_mod.deadline_of(job.meta)
        return None if at is None else max(0.0, (at - datetime.now(timezone.utc)).total_seconds())

    def prepare(self, job: Job) -> Job:
        """The job `process` sees: args decrypted and cast (before_process hooks then run on the
        job's thread, executor.run_with_hooks)."""
        args: Any = job.args
        if self.key is not None:
            args = encrypted.decrypt(args, self.key)
        if self.schema is not None:
            args = structured.cast(self.schema, args)
        if args is not job.args:
            job = dataclasses.replace(job, args=args)
        return job


DEADLINE_EXCEEDED = Atom("deadline_exceeded")
CHAIN_HALTED = Atom("chain_halted")

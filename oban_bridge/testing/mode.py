"""Testing modes (Oban's `testing: :manual | :inline`), and `testing_mode`, which switches them
for a block as `Oban.Testing.with_testing_mode/2` does.

- `"manual"`: inserts land in the table and nothing runs them — queues and plugins do not start —
  until a test drains them (`Testing.drain_queue`).
- `"inline"`: an insert runs the job at once, in the caller, with no table (testing/inline.py).

`testing_mode` changes the mode of clients built with one, in this context (thread or task)
only; a client built without `testing=` is a real one and is never switched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import ValidationError

MODES = ("manual", "inline")

_override: ContextVar[str | None] = ContextVar("oban_bridge_testing_mode", default=None)


def check(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        raise ValidationError("testing", f"expected 'manual', 'inline' or None, got {mode!r}")
    return mode


def effective(configured: str | None) -> str | None:
    """The mode a client built with `testing=configured` is in now."""
    if configured is None:
        return None
    return _override.get() or configured


@contextmanager
def testing_mode(mode: str) -> Iterator[None]:
    """`with testing_mode("inline"): …` — clients built with a testing mode use this one inside."""
    if mode not in MODES:
        raise ValidationError("testing", f"testing_mode takes 'manual' or 'inline', got {mode!r}")
    token = _override.set(mode)
    try:
        yield
    finally:
        _override.reset(token)


# Imported into test modules, a name starting with "test" would be collected by pytest as a test.
testing_mode.__test__ = False  # type: ignore[attr-defined]

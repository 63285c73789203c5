"""Job deadlines (Oban.Pro.Worker `deadline:`): a job that has not run by its deadline is
cancelled when it next runs; with `force`, a running job is stopped at the deadline.

Storage (Pro's own is not public): `meta.deadline_at`, ISO 8601 UTC, computed on insert from the
scheduled time (or now), so scheduling counts and retries or snoozes do not move it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import ValidationError
from ..unique import _UNITS

META_KEY = "deadline_at"


def parse(value: Any) -> tuple[int, bool]:
    """`60`, `(30, "minutes")` or `{"in": ..., "force": True}` -> (seconds, force)."""
    force = False
    if isinstance(value, dict):
        unknown = set(value) - {"in", "force"}
        if unknown or "in" not in value:
            raise ValidationError("deadline", f"expected {{'in': seconds, 'force': bool}}, got {value!r}")
        force = bool(value.get("force", False))
        value = value["in"]
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[1] in _UNITS:
        amount, unit = value
        value = amount * _UNITS[unit] if isinstance(amount, int) and not isinstance(amount, bool) else None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError("deadline", f"expected a positive number of seconds or (n, unit), got {value!r}")
    return value, force


def stamp(meta: dict[str, Any], scheduled_at: datetime | None, seconds: int) -> dict[str, Any]:
    start = scheduled_at or datetime.now(timezone.utc)
    at = (start + timedelta(seconds=seconds)).astimezone(timezone.utc)
    return {**meta, META_KEY: at.isoformat(timespec="microseconds").replace("+00:00", "Z")}


def deadline_of(meta: dict[str, Any]) -> datetime | None:
    raw = (meta or {}).get(META_KEY)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None

"""The pruner and lifeline settings an operator gives `start` (options or `[tool.oban_bridge]`),
in Elixir's vocabulary: `Oban.Plugins.Pruner` max_age/limit, `Oban.Plugins.Lifeline`
rescue_after, plus the orphan grace and the scope (plugins/base.py). One parser for both sources,
so a value means the same wherever it is written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .base import SCOPES, Scope

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
OFF = ("off", "false", "none")


def parse_duration(value: object, *, what: str, allow_off: bool = True) -> float | None:
    """Seconds from 90, "90", "90s", "15m", "2h", "7d" or "500ms"; None for "off" (when allowed)."""
    if isinstance(value, bool):
        if value is False and allow_off:
            return None
        raise ValueError(f"{what}: expected a duration such as 60s, 15m, 2h or 7d, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        if value.strip().lower() in OFF and allow_off:
            return None
        match = _DURATION.match(value)
        if match is None:
            off = " or off" if allow_off else ""
            raise ValueError(f"{what}: expected a duration such as 60s, 15m, 2h or 7d{off}, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{what}: expected a duration such as 60s, 15m, 2h or 7d, got {value!r}")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{what}: must be more than zero, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """None for prune_after / rescue_after turns that duty off."""

    scope: Scope = "own"
    prune_after: float | None = 60.0
    prune_limit: int = 10_000
    rescue_after: float | None = 3600.0
    orphan_grace: float = 30.0

    KEYS = ("plugin_scope", "prune_after", "prune_limit", "rescue_after", "orphan_grace")

    @classmethod
    def parse(cls, values: dict[str, Any]) -> PluginSettings:
        """From option or setting values by KEYS name; missing keys keep the defaults."""
        unknown = sorted(set(values) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"unknown plugin setting {unknown[0]!r}")
        base = cls()
        scope = values.get("plugin_scope", base.scope)
        if scope not in SCOPES:
            raise ValueError(f"plugin_scope: expected 'own' or 'all', got {scope!r}")
        limit = values.get("prune_limit", base.prune_limit)
        if isinstance(limit, str) and limit.strip().isdigit():
            limit = int(limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"prune_limit: expected a positive whole number, got {limit!r}")
        grace = parse_duration(values.get("orphan_grace", base.orphan_grace), what="orphan_grace", allow_off=False)
        assert grace is not None
        return cls(
            scope=scope,
            prune_after=parse_duration(values.get("prune_after", base.prune_after), what="prune_after")
            if "prune_after" in values else base.prune_after,
            prune_limit=limit,
            rescue_after=parse_duration(values.get("rescue_after", base.rescue_after), what="rescue_after")
            if "rescue_after" in values else base.rescue_after,
            orphan_grace=grace,
        )

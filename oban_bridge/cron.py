"""Cron expressions with Oban's semantics (lib/oban/cron/expression.ex).

Five fields — minute, hour, day, month, weekday (0–6, Sunday 0) — with `*`, literals, `a-b`,
`*/n`, `a/n` (a to the field's max), `a-b/n`, lists, month and weekday names, and the nicknames
@yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly/@reboot. Unlike Vixie cron, every
field must match (day AND weekday), as in Oban.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

NICKNAMES = {
    "@annually": "0 0 1 1 *",
    "@yearly": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@midnight": "0 0 * * *",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DOW = {"SUN": "0", "MON": "1", "TUE": "2", "WED": "3", "THU": "4", "FRI": "5", "SAT": "6"}
_MON = {"JAN": "1", "FEB": "2", "MAR": "3", "APR": "4", "MAY": "5", "JUN": "6", "JUL": "7",
        "AUG": "8", "SEP": "9", "OCT": "10", "NOV": "11", "DEC": "12"}
_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

_LITERAL = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/[1-9]\d?$")
_RANGE_STEP = re.compile(r"^\d+(-\d+)?/[1-9]\d?$")
_RANGE = re.compile(r"^\d+-\d+$")


class CronError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Expression:
    input: str
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    reboot: bool = False

    def now(self, at: datetime) -> bool:
        """`Expression.now?/2` for a wall-clock time in the crontab's time zone."""
        if self.reboot:
            return True
        weekday = at.isoweekday() % 7  # Sunday is 0
        return (at.month in self.months and weekday in self.weekdays and at.day in self.days
                and at.hour in self.hours and at.minute in self.minutes)


def _translate(field: str, names: dict[str, str]) -> str:
    for name, number in names.items():
        field = field.replace(name, number)
    return field


def _range(part: str, low: int, high: int) -> range:
    pieces = part.split("-")
    start = int(pieces[0])
    stop = int(pieces[1]) if len(pieces) == 2 else high
    if start > stop:
        raise CronError(f"min ({start}) of range must be less than or equal to the max ({stop})")
    if start < low or stop > high:
        raise CronError(f"expression field {part} is out of range: {low}..{high}")
    return range(start, stop + 1)


def _part(part: str, low: int, high: int) -> list[int]:
    if part == "*":
        return list(range(low, high + 1))
    if _LITERAL.match(part):
        return [int(part)]
    if _STEP.match(part):
        return list(range(low, high + 1))[:: int(part[2:])]
    if _RANGE_STEP.match(part):
        span, step = part.split("/")
        return list(_range(span, low, high))[:: int(step)]
    if _RANGE.match(part):
        return list(_range(part, low, high))
    raise CronError(f"unrecognized cron expression: {part}")


def _field(field: str, low: int, high: int) -> frozenset[int]:
    values = frozenset(v for part in re.split(r"\s*,\s*", field) for v in _part(part, low, high))
    if not all(low <= v <= high for v in values):
        raise CronError(f"expression field {field} is out of range: {low}..{high}")
    return values


def parse(text: str) -> Expression:
    """Parse or raise CronError with Oban's messages."""
    if not isinstance(text, str):
        raise CronError(f"expected a cron expression string, got {text!r}")
    if text == "@reboot":
        return Expression(input=text, reboot=True)
    source = NICKNAMES.get(text, text)
    fields = source.split()
    if len(fields) != 5:
        raise CronError(f"incorrect number of fields in expression: {text}")
    minute, hour, day, month, weekday = fields
    days = _field(day, 1, 31)
    months = _field(_translate(month, _MON), 1, 12)
    if day != "*" and month != "*" and not any(d <= _MAX_DAYS[m] for m in months for d in days):
        raise CronError(f"no day in {day!r} can occur in months {month!r}")
    return Expression(
        input=text,
        minutes=_field(minute, 0, 59),
        hours=_field(hour, 0, 23),
        days=days,
        months=months,
        weekdays=_field(_translate(weekday, _DOW), 0, 6),
    )

"""Human tables and JSON, one place for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import orjson


def emit_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"

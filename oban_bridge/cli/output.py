"""Human tables and JSON, one place for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

import orjson

from .. import jsonc


def emit_json(value: Any) -> None:
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer past 64 bits, as Elixir may store in args
        text = jsonc.dumps(value)
    click.echo(text.decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else jsonc.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"

"""Structured args (Oban.Pro.Worker `args_schema`): declared fields with types, required fields,
enums, defaults and nested embeds; validated on insert with every error named, cast before
`process`.

    @worker("MyApp.Structured", args_schema={
        "id": field("id", required=True),
        "name": field("string", required=True),
        "mode": enum(["enabled", "disabled", "paused"], default="enabled"),
        "data": embeds_one({"office_id": field("uuid", required=True),
                            "has_notes": field("boolean", default=False)}, required=True),
        "addresses": embeds_many({"city": field("string")}),
    })

Like Ecto's cast, keys the schema does not declare are dropped. Stored args are plain JSON
(enums as strings, `term` fields as base64 Erlang terms), so Elixir reads them too.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ValidationError
from ..term import binary_to_term, term_to_binary

MISSING: Any = object()
TYPES = ("id", "integer", "float", "decimal", "string", "boolean", "map", "uuid", "binary_id", "term", "any",
         "date", "time", "datetime", "naive_datetime", "utc_datetime", "enum", "array", "embeds_one", "embeds_many")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Field:
    type: str
    required: bool = False
    default: Any = MISSING
    values: tuple[str, ...] = ()
    of: Field | None = None
    schema: dict[str, Field] = dc_field(default_factory=dict)


def field(type: str, *, required: bool = False, default: Any = MISSING) -> Field:
    if type not in TYPES or type in ("enum", "array", "embeds_one", "embeds_many"):
        raise ValueError(f"unknown field type {type!r}; use enum(), array(), embeds_one(), embeds_many() for those")
    return Field(type, required, default)


def enum(values: list[str], *, required: bool = False, default: Any = MISSING) -> Field:
    return Field("enum", required, default, tuple(str(v) for v in values))


def array(of: Field | str, *, required: bool = False, default: Any = MISSING) -> Field:
    return Field("array", required, default, of=field(of) if isinstance(of, str) else of)


def embeds_one(schema: dict[str, Field], *, required: bool = False) -> Field:
    return Field("embeds_one", required, schema=schema)


def embeds_many(schema: dict[str, Field], *, required: bool = False) -> Field:
    return Field("embeds_many", required, schema=schema)


class Args(dict[str, Any]):
    """Cast args: item access like a dict, attribute access like Pro's struct."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Invalid(Exception):
    pass


def _dump_value(f: Field, value: Any, path: str, errors: list[str], load: bool = False) -> Any:
    t = f.type
    try:
        if t == "id" or t == "integer":
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or (t == "id" and value < 1):
                raise _Invalid(f"is invalid (expected {'a positive id' if t == 'id' else 'an integer'})")
            return value
        if t == "float":
            # Ecto casts numbers and numeric strings ("1.5", "2") to floats.
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise _Invalid("is invalid (expected a number)") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                    or value in (float("inf"), float("-inf")):
                raise _Invalid("is invalid (expected a number)")
            try:
                return float(value)
            except OverflowError:  # an integer past the largest float
                raise _Invalid("is invalid (expected a number a float can hold)") from None
        if t == "decimal":
            # Stored as a string, as Jason encodes a Decimal: no binary float rounding on the way.
            if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
                raise _Invalid("is invalid (expected a decimal)")
            try:
                number = Decimal(value.strip() if isinstance(value, str) else str(value) if isinstance(value, float)
                                 else value)
            except InvalidOperation:
                raise _Invalid("is invalid (expected a decimal)") from None
            if not number.is_finite():
                raise _Invalid("is invalid (expected a finite decimal)")
            return str(number)
        if t == "string":
            if not isinstance(value, str):
                raise _Invalid("is invalid (expected a string)")
            return value
        if t == "boolean":
            # Ecto's boolean cast: true/false and the strings "true"/"false"/"1"/"0".
            if isinstance(value, str) and value in ("true", "false", "1", "0"):
                return value in ("true", "1")
            if not isinstance(value, bool):
                raise _Invalid("is invalid (expected a boolean)")
            return value
        if t == "map":
            if not isinstance(value, dict):
                raise _Invalid("is invalid (expected a map)")
            return value
        if t == "any":
            return value
        if t in ("uuid", "binary_id"):
            if not isinstance(value, str) or not _UUID.match(value):
                raise _Invalid("is invalid (expected a UUID)")
            return value.lower()
        if t == "date":
            if isinstance(value, datetime):
                raise _Invalid("is invalid (expected a date, got a datetime)")
            day = value if isinstance(value, date) else date.fromisoformat(str(value))
            return day.isoformat()
        if t == "time":
            clock = value if isinstance(value, time) else time.fromisoformat(str(value))
            return clock.replace(microsecond=0, tzinfo=None).isoformat()  # Ecto's :time: whole seconds
        if t in ("datetime", "utc_datetime"):
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            if t == "utc_datetime":
                moment = moment.replace(microsecond=0)  # Ecto's :utc_datetime: whole seconds
            return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        if t == "naive_datetime":
            # NaiveDateTime.from_iso8601 ignores an offset; Ecto's :naive_datetime keeps whole seconds.
            naive = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return naive.replace(tzinfo=None, microsecond=0).isoformat()
        if t == "term":
            if load:  # stored: already base64 of an Erlang term, checked when cast
                if not isinstance(value, str):
                    raise _Invalid("is invalid (expected an encoded term)")
                return value
            return base64.b64encode(term_to_binary(value)).decode()
        if t == "enum":
            if str(value) not in f.values:
                raise _Invalid(f"is invalid (expected one of {', '.join(f.values)})")
            return str(value)
        if t == "array":
            if not isinstance(value, list):
                raise _Invalid("is invalid (expected a list)")
            assert f.of is not None
            return [_dump_value(f.of, item, f"{path}[{i}]", errors, load) for i, item in enumerate(value)]
        if t == "embeds_one":
            if not isinstance(value, dict):
                raise _Invalid("is invalid (expected a map)")
            return _dump(f.schema, value, path, errors, load)
        if t == "embeds_many":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise _Invalid("is invalid (expected a list of maps)")
            return [_dump(f.schema, v, f"{path}[{i}]", errors, load) for i, v in enumerate(value)]
    except _Invalid as exc:
        errors.append(f"{path} {exc}")
    except (ValueError, TypeError) as exc:
        errors.append(f"{path} is invalid ({exc})")
    return None


def _dump(schema: dict[str, Field], values: dict[str, Any], path: str, errors: list[str],
          load: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in schema.items():
        where = f"{path}.{name}" if path else name
        value = values.get(name, MISSING)
        if value is MISSING or value is None or value == "":
            if f.default is not MISSING:
                value = f.default
            elif f.required:
                errors.append(f"{where} can't be blank")
                continue
            else:
                continue
        dumped = _dump_value(f, value, where, errors, load)
        if dumped is not None or value is None:
            out[name] = dumped
    return out


def validate(schema: dict[str, Field], args: dict[str, Any], *, load: bool = False) -> dict[str, Any]:
    """The args to store, or one ValidationError naming every bad field."""
    errors: list[str] = []
    dumped = _dump(schema, args, "", errors, load)
    if errors:
        raise ValidationError("args", "; ".join(errors))
    return dumped


def _cast_value(f: Field, value: Any) -> Any:
    if value is None:
        return None
    if f.type == "term":
        return binary_to_term(base64.b64decode(value))
    if f.type in ("datetime", "utc_datetime"):
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if f.type == "naive_datetime":
        return datetime.fromisoformat(str(value))
    if f.type == "date":
        return date.fromisoformat(str(value))
    if f.type == "time":
        return time.fromisoformat(str(value))
    if f.type == "decimal":
        return Decimal(str(value))
    if f.type == "array":
        assert f.of is not None
        return [_cast_value(f.of, v) for v in value]
    if f.type == "embeds_one":
        return cast(f.schema, value)
    if f.type == "embeds_many":
        return [cast(f.schema, v) for v in value]
    return value


def cast(schema: dict[str, Field], args: dict[str, Any]) -> Args:
    """Stored args (Elixir's or Python's) into `Args`, defaults filled, unknown keys dropped."""
    dumped = validate(schema, args, load=True)
    out = Args()
    for name, f in schema.items():
        out[name] = _cast_value(f, dumped.get(name)) if name in dumped else None
    return out

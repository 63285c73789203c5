"""`oban-bridge`: one click group, a module per verb family.

Exit codes: 0 ok, 1 the operation failed (database unreachable, schema missing…), 2 bad usage or
input. Errors are one line on stderr; `--debug` shows the traceback. Passwords are masked.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..config import DEFAULT_PREFIX, mask_password
from ..errors import ObanBridgeError, ValidationError


class Context:
    def __init__(self, database_url: str | None, prefix: str, debug: bool,
                 settings: dict[str, Any] | None = None) -> None:
        self.database_url = database_url
        self.prefix = prefix
        self.debug = debug
        self.settings = settings or {}  # [tool.oban_bridge], for the verbs that read more of it

    def client(self) -> Any:
        from ..client import ObanBridge

        return ObanBridge(self.database_url, prefix=self.prefix)


class BridgeGroup(click.Group):
    """Turns oban_bridge's own errors into one clear line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if _debug(ctx):
                raise
            raise click.UsageError(str(exc), ctx) from None
        except (ObanBridgeError, ValueError) as exc:
            if _debug(ctx):
                raise
            raise click.ClickException(mask_password(str(exc))) from None


def _debug(ctx: click.Context) -> bool:
    obj = ctx.find_object(Context)
    return bool(obj and obj.debug) or "--debug" in sys.argv


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    help="PostgreSQL URL (env DATABASE_URL). Without one the embedded PostgreSQL is used.",
)
@click.option(
    "--prefix",
    envvar="OBAN_PREFIX",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="The PostgreSQL schema holding Oban's tables (Oban's :prefix).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="oban_bridge")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, prefix: str, debug: bool) -> None:
    """Enqueue and inspect Oban jobs from Python, on the tables Elixir Oban uses.

    Settings come from the options, then DATABASE_URL / OBAN_PREFIX, then [tool.oban_bridge]
    (database_url, prefix) in ./pyproject.toml; with no database URL at all the embedded
    PostgreSQL is used.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    settings = project_settings()
    if database_url is None:
        database_url = settings.get("database_url")
    if ctx.get_parameter_source("prefix") in (click.core.ParameterSource.DEFAULT, None) and "prefix" in settings:
        prefix = settings["prefix"]
    ctx.obj = Context(database_url, prefix, debug, settings)


def project_settings() -> dict[str, Any]:
    """[tool.oban_bridge] of ./pyproject.toml, if any."""
    import tomllib
    from pathlib import Path

    path = Path.cwd() / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read {path}: {exc}") from None
    settings = data.get("tool", {}).get("oban_bridge", {})
    if not isinstance(settings, dict):
        raise click.UsageError(f"{path}: [tool.oban_bridge] must be a table")
    from ..plugins.settings import PluginSettings

    known = ("database_url", "prefix", *PluginSettings.KEYS)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise click.UsageError(f"{path}: unknown [tool.oban_bridge] setting {unknown[0]!r} (known: {', '.join(known)})")
    try:
        PluginSettings.parse({k: v for k, v in settings.items() if k in PluginSettings.KEYS})
    except ValueError as exc:
        raise click.UsageError(f"{path}: [tool.oban_bridge] {exc}") from None
    return settings


from . import demo as _demo  # noqa: E402,F401
from . import enqueue as _enqueue  # noqa: E402,F401
from . import hephaestus as _hephaestus  # noqa: E402,F401
from . import jobs as _jobs  # noqa: E402,F401
from . import queues as _queues  # noqa: E402,F401
from . import schema as _schema  # noqa: E402,F401
from . import start as _start  # noqa: E402,F401
from . import top as _top  # noqa: E402,F401

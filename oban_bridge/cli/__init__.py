"""`oban-bridge`: one click group, a module per verb family.

Exit codes: 0 ok, 1 the operation failed (database unreachable, schema missing…), 2 bad usage or
input. Errors are one line on stderr; `--debug` shows the traceback. Passwords are masked.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from ..config import DEFAULT_PREFIX, mask_password
from ..errors import ObanBridgeError, ValidationError


class Context:
    def __init__(self, database_url: str | None, prefix: str, debug: bool,
                 settings: dict[str, Any] | None = None) -> None:
        self._database_url = database_url
        # A bad URL from the environment or pyproject.toml is reported when a verb uses it, so a
        # verb's own --database-url can still replace it.
        self.url_error: click.UsageError | None = None
        self.prefix = prefix
        self.debug = debug
        self.settings = settings or {}  # [tool.oban_bridge], for the verbs that read more of it
        self.leaf: click.Context | None = None

    @property
    def database_url(self) -> str | None:
        if self.url_error is not None:
            raise self.url_error
        return self._database_url

    @database_url.setter
    def database_url(self, value: str | None) -> None:
        self._database_url, self.url_error = value, None

    def client(self, *, writes: bool = False) -> Any:
        from ..client import ObanBridge

        if writes:
            self.warn_if_embedded()
        return ObanBridge(self.database_url, prefix=self.prefix)

    def warn_if_embedded(self) -> None:
        """A verb that writes, with no database configured, would quietly change the embedded
        server's tables instead of the application's: say so where nobody can miss it."""
        if self.database_url is not None:
            return
        from ..embedded import data_dir

        verb = self.leaf.command_path if self.leaf is not None else "oban-bridge"
        click.secho(f"WARNING: no DATABASE_URL, --database-url or [tool.oban_bridge] database_url: `{verb}` "
                    f"writes to the embedded PostgreSQL in {data_dir()}, not to your application's database",
                    err=True, fg="yellow", bold=True)


class BridgeGroup(click.Group):
    """Turns oban_bridge's own errors, and the database's, into one clear line and the documented
    exit code: 2 for bad input, 1 for an operation that failed."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if _debug(ctx):
                raise
            raise click.UsageError(str(exc), _leaf(ctx)) from None
        except psycopg.errors.UndefinedTable:
            if _debug(ctx):
                raise
            from ..errors import SchemaMissingError

            obj = ctx.find_object(Context)
            raise click.ClickException(str(SchemaMissingError(obj.prefix if obj else DEFAULT_PREFIX))) from None
        except psycopg.errors.DataError as exc:  # a value PostgreSQL cannot hold (an id out of range…)
            if _debug(ctx):
                raise
            raise click.UsageError(_first_line(exc), _leaf(ctx)) from None
        except (ObanBridgeError, ValueError, psycopg.Error) as exc:
            if _debug(ctx):
                raise
            raise click.ClickException(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_password(text.splitlines()[0] if text else type(exc).__name__)


def _leaf(ctx: click.Context) -> click.Context:
    """The verb's context (recorded by its connection options), so a usage error shows the
    verb's usage line, not the group's."""
    obj = ctx.find_object(Context)
    return obj.leaf if obj is not None and obj.leaf is not None else ctx


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
    (database_url, prefix) in the nearest pyproject.toml (this directory or one above it); with no
    database URL at all the embedded PostgreSQL is used.
    """
    from ..logs import mark

    if not logging.getLogger().handlers:
        handler = mark(logging.StreamHandler())
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.WARNING)
    settings = project_settings()
    source = ctx.get_parameter_source("database_url")
    hint = "DATABASE_URL" if source == click.core.ParameterSource.ENVIRONMENT else "'--database-url'"
    if database_url is None and source != click.core.ParameterSource.COMMANDLINE and os.environ.get("DATABASE_URL") == "":
        # click drops an empty environment variable as if unset; a DATABASE_URL that is set but
        # empty is a mistake to report (as one of spaces is), not a reason to use the embedded server.
        database_url, hint = "", "DATABASE_URL"
    if database_url is None and "database_url" in settings:
        database_url, hint = settings["database_url"], f"[tool.oban_bridge] database_url in {find_pyproject()}"
    if ctx.get_parameter_source("prefix") in (click.core.ParameterSource.DEFAULT, None) and "prefix" in settings:
        prefix = settings["prefix"]
    ctx.obj = Context(None, _check_prefix(prefix, ctx), debug, settings)
    try:
        ctx.obj.database_url = _check_url(database_url, ctx, hint)
    except click.UsageError as exc:
        if source == click.core.ParameterSource.COMMANDLINE:
            raise
        ctx.obj.url_error = exc


def _check_url(url: str | None, ctx: click.Context, hint: str = "'--database-url'") -> str | None:
    if url is None:
        return None
    if not url.strip():
        raise click.BadParameter("empty; leave it out to use the embedded PostgreSQL", ctx, param_hint=hint)
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg raises ProgrammingError for unparsable strings
        raise click.BadParameter(f"not a PostgreSQL URL or conninfo string ({_first_line(exc)})", ctx,
                                 param_hint=hint) from None
    return url


def _check_prefix(prefix: str, ctx: click.Context) -> str:
    from ..config import validate_prefix

    try:
        return validate_prefix(prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param_hint="'--prefix'") from None


def _verb_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    obj = ctx.find_object(Context)
    if obj is None:
        return
    obj.leaf = ctx
    if value is not None:
        obj.database_url = _check_url(value, ctx)


def _verb_prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    obj = ctx.find_object(Context)
    if obj is not None and value is not None:
        obj.prefix = _check_prefix(value, ctx)


def _verb_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    obj = ctx.find_object(Context)
    if obj is not None and value:
        obj.debug = True
        logging.getLogger().setLevel(logging.DEBUG)


def add_connection_options(command: click.Command) -> None:
    """`--database-url`, `--prefix` and `--debug` on every verb as well as on the group, so
    `oban-bridge migrate --prefix private` works as the README and the error messages write it."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_connection_options(sub)
        if command is main:
            return
    names = {p.name for p in command.params}
    if "database_url" not in names:
        command.params.append(click.Option(["--database-url"], default=None, expose_value=False, is_eager=True,
                                           callback=_verb_url, help="PostgreSQL URL (overrides the group's)."))
    if "prefix" not in names:
        command.params.append(click.Option(["--prefix"], default=None, expose_value=False, callback=_verb_prefix,
                                           help="Oban's schema (overrides the group's)."))
    if "debug" not in names:
        command.params.append(click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                                           callback=_verb_debug, help="Show tracebacks and debug logs."))


def find_pyproject() -> Any:
    """The nearest pyproject.toml from the current directory up, as tools like ruff and pytest
    look: a command run in a subdirectory of the project reads the project's settings."""
    from pathlib import Path

    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def project_settings() -> dict[str, Any]:
    """[tool.oban_bridge] of the nearest pyproject.toml, if any."""
    import tomllib

    path = find_pyproject()
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read {path}: {exc}") from None
    settings = data.get("tool", {}).get("oban_bridge", {})
    if not isinstance(settings, dict):
        raise click.UsageError(f"{path}: [tool.oban_bridge] must be a table")
    from ..plugins.settings import PluginSettings

    known = ("database_url", "prefix", "queues", *PluginSettings.KEYS)
    for key in ("database_url", "prefix"):
        if key in settings and not isinstance(settings[key], str):
            raise click.UsageError(f"{path}: [tool.oban_bridge] {key} must be a string, got {settings[key]!r}")
    if "queues" in settings and not isinstance(settings["queues"], (str, dict)):
        raise click.UsageError(f"{path}: [tool.oban_bridge] queues must be a string like \"badges:10,printing:2\" "
                               f"or a table of queue = limit, got {settings['queues']!r}")
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

add_connection_options(main)

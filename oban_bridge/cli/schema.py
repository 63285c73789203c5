"""`migrate` and `verify`."""

from __future__ import annotations

import click
import orjson

from ..schema import CURRENT_VERSION
from . import Context, main


@main.command()
@click.option("--version", "version", type=click.IntRange(1, CURRENT_VERSION), default=CURRENT_VERSION,
              show_default=True, help="Oban migration version to reach.")
@click.option("--limits", is_flag=True,
              help="Also create oban_bridge's own tables for global and rate limits (oban_bridge_rate_limits, "
                   "oban_bridge_limit_claims), which queues with global= or rate= need. Elixir's schema is not "
                   "changed by it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def migrate(obj: Context, version: int, limits: bool, as_json: bool) -> None:
    """Install or upgrade Oban's schema, exactly as Elixir's Oban.Migration.up/1 would.

    \b
    Examples:
      oban-bridge migrate
      oban-bridge --prefix private migrate
      oban-bridge migrate --limits
    """
    with obj.client(writes=True) as client:
        result = client.migrate(version, limits=limits)
    if as_json:
        click.echo(orjson.dumps({"prefix": result.prefix, "from": result.from_version, "to": result.to_version,
                                 "limits": result.limits}))
        return
    if result.changed:
        click.echo(f"migrated schema {result.prefix!r} from version {result.from_version} to {result.to_version}")
    else:
        click.echo(f"schema {result.prefix!r} is already at version {result.from_version}; nothing to do")
    if result.limits:
        click.echo(f"oban_bridge's limit tables {result.prefix}.oban_bridge_rate_limits and "
                   f"{result.prefix}.oban_bridge_limit_claims are in place")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(obj: Context, as_json: bool) -> None:
    """Compare the installed schema with Elixir Oban 2.23.1's; exit 1 on any difference.

    \b
    Examples:
      oban-bridge verify
      oban-bridge --prefix private verify --json
    """
    with obj.client() as client:
        report = client.verify()
    if as_json:
        click.echo(orjson.dumps({
            "prefix": report.prefix, "exists": report.exists, "version": report.version,
            "foreign": report.foreign, "differences": report.differences, "ok": report.ok,
            "limits_table": report.limits,
        }))
    else:
        click.echo(report.summary())
        for line in report.differences:
            click.echo(f"  - {line}")
    if not report.ok:
        raise SystemExit(1)

"""`start`: run Python workers on Oban queues until SIGINT/SIGTERM."""

from __future__ import annotations

import functools
from dataclasses import dataclass
import importlib
import math
import os
import sys
from typing import Any

import click

from .. import jsonc
from .. import logs
from ..errors import ValidationError
from ..processes import exit_past_stuck_jobs, node_name, parse_processes
from ..processes import run as run_processes
from ..plugins.settings import PluginSettings
from ..limits import QueueOptions
from ..runtime import default_plugins, parse_queues
from ..worker import registry
from . import Context, main


def _finite(value: float, name: str) -> float:
    """FloatRange lets nan through (every comparison with it is false)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a number of seconds", param_hint=f"'--{name}'")
    return value


BOOT_ENV = "OBAN_BRIDGE_BOOT"


def boot() -> None:
    """Run `OBAN_BRIDGE_BOOT` ('package.module:function'), once per process, before the worker
    modules are imported: a framework's set-up (contrib/django.py sets it for `manage.py
    oban_bridge`), which `--processes` children, started afresh, need as much as the parent."""
    target = os.environ.get(BOOT_ENV, "").strip()
    if not target:
        return
    module, _, function = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), function or "boot")
    except (ImportError, AttributeError) as exc:
        raise ValidationError("module", f"cannot run {BOOT_ENV}={target!r}: {exc}") from None
    fn()


def import_modules(modules: tuple[str, ...]) -> None:
    """Import the modules whose @worker decorators register the workers to run."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    boot()
    for name in modules:
        if not name.strip():
            raise ValidationError("module", f"expected a module name such as my_app.jobs, got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValidationError("module", f"cannot import {name!r}: {exc}") from None


def parse_cron_entry(text: str) -> tuple[Any, ...]:
    from ..cron import CronError, parse

    parts = text.split("|")
    if len(parts) not in (2, 3) or not parts[1].strip():
        raise ValidationError("cron", f"expected 'EXPR|WORKER' or 'EXPR|WORKER|ARGS_JSON', got {text!r}")
    expr, worker = parts[0].strip(), parts[1].strip()
    try:
        parse(expr)
    except CronError as exc:
        raise ValidationError("cron", str(exc)) from None
    if len(parts) == 2:
        return (expr, worker)
    try:
        args = jsonc.loads(parts[2])
    except jsonc.JSONDecodeError as exc:
        raise ValidationError("cron", f"args are not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise ValidationError("cron", "args must be a JSON object")
    return (expr, worker, {"args": args})


def _describe(queue: str, options: QueueOptions) -> str:
    return f"{queue}:{options.local_limit}" if not options.limited else f"{queue}:{options.describe()}"


@main.command()
@click.option("--module", "-m", "modules", multiple=True, required=True,
              help="Python module defining @worker classes/functions; repeat for more.")
@click.option("--queues", "-q", default=None,
              help="Queues and limits, e.g. badges:10,printing:2; with global/rate limits "
                   "api:local=10,global=20,rate=90/10s,partition=args.profile (README: Global and rate "
                   "limits). Default: [tool.oban_bridge] queues.")
@click.option("--node", default=None, help="Node name recorded in attempted_by (default: host name).")
@click.option("--name", default=None, help="Oban instance name for leadership (default: ObanBridge).")
@click.option("--grace", type=click.FloatRange(min=0, max=1_000_000), callback=lambda _c, _p, v: _finite(v, "grace"),
              default=15.0, show_default=True,
              help="Seconds running jobs get to finish on shutdown.")
@click.option("--cron", "crons", multiple=True, metavar="'EXPR|WORKER[|ARGS]'",
              help="A cron entry run by the leader, e.g. '0 9 * * MON-FRI|MyApp.Report|{\"day\": true}'.")
@click.option("--timezone", default="Etc/UTC", show_default=True, help="Time zone of the cron entries.")
@click.option("--processes", "-p", default="1", show_default=True, metavar="N|auto",
              help="Node processes to run (auto: one per core); each runs every queue at its limit. "
                   "For CPU-bound jobs, which one Python process runs on one core.")
@click.option("--plugin-scope", type=click.Choice(["own", "all"]), default=None,
              help="What the pruner and lifeline touch: own (default) = this instance's queues and the "
                   "jobs Python nodes ran, leaving an Elixir app's to its own plugins; all = every queue "
                   "and job, as Elixir's plugins do (Python-only deployments).")
@click.option("--prune-after", metavar="DURATION|off", default=None,
              help="Delete finished jobs older than this (Pruner max_age; default 60s; e.g. 7d), or off.")
@click.option("--prune-limit", metavar="N", default=None, help="At most N jobs pruned a run (default 10000).")
@click.option("--rescue-after", metavar="DURATION|off", default=None,
              help="Rescue jobs executing longer than this (Lifeline rescue_after; default 60m), or off.")
@click.option("--orphan-grace", metavar="DURATION", default=None,
              help="Rescue the jobs of a Python node gone this long (default 30s).")
@click.option("--log-level", default=None, metavar="LEVEL",
              help="DEBUG, INFO (default), WARNING or ERROR; env OBAN_BRIDGE_LOG_LEVEL.")
@click.option("--log-jobs", is_flag=True, default=None,
              help="A line for every job outcome, as Elixir's Oban.Telemetry.attach_default_logger; env "
                   "OBAN_BRIDGE_LOG_JOBS=1. Without it only failures, cancels and discards are logged.")
@click.option("--log-format", default=None, metavar="text|json",
              help="text (default) or json, one object per line; env OBAN_BRIDGE_LOG_FORMAT. Ignored when "
                   "a worker module configured logging itself: its handlers are kept.")
@click.option("--otel", is_flag=True, default=False,
              help="OpenTelemetry spans for job attempts and inserts, as opentelemetry_oban makes them "
                   "(README: Tracing); needs oban_bridge[otel], and your SDK set-up for where spans go.")
@click.option("--span-relationship", type=click.Choice(["link", "child", "none"]), default="link",
              show_default=True, help="How an attempt's span relates to the context its job carries.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics on http://ADDR:PORT/metrics (README: Metrics); needs "
                   "oban_bridge[metrics]. With --processes N, node i serves on PORT + i.")
@click.option("--metrics-addr", default="0.0.0.0", show_default=True, help="Address for --metrics-port.")
@click.pass_obj
def start(obj: Context, modules: tuple[str, ...], queues: str, node: str | None, name: str | None,
          grace: float, crons: tuple[str, ...], timezone: str, processes: str, plugin_scope: str | None,
          prune_after: str | None, prune_limit: str | None, rescue_after: str | None,
          orphan_grace: str | None, log_level: str | None, log_jobs: bool | None,
          log_format: str | None, otel: bool, span_relationship: str, metrics_port: int | None,
          metrics_addr: str) -> None:
    """Run the workers of MODULE on QUEUES, like an Elixir node with those queues.

    \b
    Examples:
      oban-bridge start --module my_app.jobs --queues badges:10,printing:2
      DATABASE_URL=postgresql://localhost/my_app oban-bridge start -m my_app.jobs -q badges:10
      oban-bridge start -m my_app.thumbnails -q images:4 --processes auto
      oban-bridge start -m my_app.api -q 'api:local=10,global=20,rate=90/10s,partition=args.profile'
    """
    if queues is None:
        queues = obj.settings.get("queues")
        if queues is None:
            raise ValidationError("queues", "no queues: pass --queues NAME:LIMIT,... or set queues in "
                                            "[tool.oban_bridge]")
    try:
        limits = parse_queues(queues)
    except (ValueError, TypeError) as exc:
        raise ValidationError("queues", str(exc)) from None
    try:
        count = parse_processes(processes)
    except ValueError as exc:
        raise ValidationError("processes", str(exc)) from None
    crontab = [parse_cron_entry(entry) for entry in crons]
    if crontab:
        from ..plugins.cron import Cron

        try:
            Cron(crontab, timezone=timezone)  # validate now: a bad entry stops here, not at 09:00
        except ValueError as exc:
            raise ValidationError("cron", str(exc)) from None
    settings = plugin_settings(obj, plugin_scope=plugin_scope, prune_after=prune_after, prune_limit=prune_limit,
                               rescue_after=rescue_after, orphan_grace=orphan_grace)
    try:
        log_settings = logs.settings(log_level, log_format, log_jobs or None)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("OBAN_BRIDGE_"):  # "OBAN_BRIDGE_X must …": named once, as the field
            field, _, reason = text.partition(" ")
            raise ValidationError(field, reason) from None
        raise ValidationError("log-level" if "level" in text else "log-format", text) from None
    logs.release()  # the module's own logging.basicConfig() must take effect (logs.configure)
    import_modules(modules)
    if not registry():
        raise ValidationError("module", f"no @worker found in {', '.join(modules)}")
    logs.configure(*(("DEBUG", *log_settings[1:]) if obj.debug else log_settings))
    watch = Observability(otel, span_relationship, metrics_port, metrics_addr)
    watch.check(count)
    kwargs: dict[str, Any] = {"prefix": obj.prefix, "queues": limits, "shutdown_grace": grace}
    if crontab:
        kwargs.update(crontab=crontab, cron_timezone=timezone)
    if name:
        kwargs["name"] = name
    obj.warn_if_embedded()
    from ..client import ObanBridge

    def announce() -> None:
        click.echo(f"oban-bridge: running {', '.join(_describe(q, o) for q, o in limits.items())} "
                   f"with workers {', '.join(sorted(registry()))}"
                   + (f" in {count} processes" if count > 1 else ""), err=True)

    if count == 1:
        announce()
        watch.begin(0)
        ObanBridge(obj.database_url, node=node, plugins=default_plugins(settings=settings), **kwargs).run()
        exit_past_stuck_jobs()
        return
    from ..config import Config, default_node

    # Resolve the URL once here: children must share one database, never each start an embedded one.
    url = Config(database_url=obj.database_url, prefix=obj.prefix).resolved_url()
    # A database that is down or lacks the schema is one line here, not a traceback per child.
    check = ObanBridge(url, prefix=obj.prefix, queues=limits)  # not entered: that would start the queues
    try:
        check.preflight()
    finally:
        check.close()
    announce()  # after the check: a database that is down is the one line printed
    make = functools.partial(cli_node, url=url, base_node=node or default_node(), processes=count,
                             modules=modules, settings=settings, log_settings=log_settings, kwargs=kwargs,
                             watch=watch)
    sys.exit(run_processes(make, count, stop_timeout=grace + 30.0))


def plugin_settings(obj: Context, **options: str | None) -> PluginSettings:
    """Options first, then [tool.oban_bridge]; Elixir's defaults for the rest."""
    values = {k: v for k, v in obj.settings.items() if k in PluginSettings.KEYS}
    values.update({k: v for k, v in options.items() if v is not None})
    try:
        return PluginSettings.parse(values)
    except ValueError as exc:
        key, _, reason = str(exc).partition(": ")
        raise ValidationError(key.replace("_", "-"), reason or key) from None


@dataclass(frozen=True, slots=True)
class Observability:
    """`--otel` and `--metrics-port`: checked once in the parent, begun in each node process."""

    otel: bool
    span_relationship: str
    metrics_port: int | None
    metrics_addr: str

    def check(self, processes: int = 1) -> None:
        """In the parent, before any node starts: what every process would refuse is one line."""
        if self.otel:
            from .. import tracing

            if not tracing.available():
                raise ValidationError("otel", "tracing needs the OpenTelemetry API: pip install 'oban_bridge[otel]'")
        if self.metrics_port is not None:
            from .. import metrics

            if not metrics.available():
                raise ValidationError("metrics-port", "metrics need prometheus_client: "
                                                      "pip install 'oban_bridge[metrics]'")
            last = self.metrics_port + processes - 1
            if last > 65535:
                raise ValidationError("metrics-port", f"{processes} processes serve on ports {self.metrics_port} "
                                                      f"to {last}, past 65535")
            if processes > 1:  # a single node binds at once and says so itself
                for port in range(self.metrics_port, last + 1):
                    self._probe(port)

    def _probe(self, port: int) -> None:
        import socket

        try:
            infos = socket.getaddrinfo(self.metrics_addr or None, port, type=socket.SOCK_STREAM)
            family, _, _, _, address = infos[0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds
                probe.bind(address)
        except OSError as exc:
            raise ValidationError("metrics-port", f"cannot serve metrics on {self.metrics_addr}:{port}: "
                                                  f"{exc.strerror or exc}") from None

    def begin(self, index: int) -> None:
        if self.otel:
            from .. import tracing

            tracing.setup(span_relationship=self.span_relationship)
        if self.metrics_port is not None:
            from .. import metrics

            port = self.metrics_port + index
            try:
                metrics.serve(port, self.metrics_addr)
            except OSError as exc:
                raise ValidationError("metrics-port", f"cannot serve metrics on {self.metrics_addr}:{port}: "
                                                      f"{exc.strerror or exc}") from None


def cli_node(index: int, *, url: str, base_node: str, processes: int, modules: tuple[str, ...],
             settings: PluginSettings, log_settings: tuple[str, str, bool], kwargs: dict[str, Any],
             watch: Observability | None = None) -> Any:
    """Builds one node inside a child process of `start --processes N` (spawned: imports again)."""
    from ..client import ObanBridge

    logs.release()
    import_modules(modules)
    logs.configure(*log_settings)
    if watch is not None:
        watch.begin(index)
    return ObanBridge(url, node=node_name(base_node, index, processes), plugins=default_plugins(settings=settings),
                      **kwargs)

"""`manage.py oban_bridge <verb> …`: the oban-bridge CLI with Django set up and pointed at Django's
database. `manage.py oban_bridge start` runs the workers; -m and -q default to OBAN_BRIDGE's
`modules` and `queues`; every other verb (migrate, jobs, queues, enqueue …) works as usual."""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import database_url, settings


def _given(argv: list[str], short: str | None, long: str) -> bool:
    """Whether the user's own argv sets this option, in any of click's spellings: `-q x`,
    `-qx`, `--queues x`, `--queues=x`."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == long or arg.startswith(long + "="):
            return True
        if short is not None and arg.startswith(short):
            return True
    return False


class Command(BaseCommand):
    help = "Run the oban-bridge CLI (start, jobs, queues, migrate, …) on Django's database."
    # The verbs check what they need themselves, and with a clearer message; Django's checks
    # (ours says when Oban's tables are missing) must not stand in the way of `migrate`.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("argv", nargs=argparse.REMAINDER, help="the oban-bridge verb and its options")

    def handle(self, *args: Any, **options: Any) -> None:
        from oban_bridge.cli import main
        from oban_bridge.cli.start import BOOT_ENV

        argv = list(options["argv"])
        if not argv:
            raise CommandError("give a verb: manage.py oban_bridge start | jobs | queues | migrate | … (--help)")
        config = settings()
        if argv[0] == "start":
            given, defaults = argv[1:], []
            modules = config.get("modules") or []
            if not _given(given, "-m", "--module"):
                if not modules:
                    raise CommandError("no worker modules: pass -m MODULE or set OBAN_BRIDGE['modules']")
                for module in ([modules] if isinstance(modules, str) else modules):
                    defaults += ["-m", str(module)]
            queues = config.get("queues")
            if queues and not _given(given, "-q", "--queues"):
                defaults += ["-q", queues if isinstance(queues, str) else ",".join(f"{q}:{n}" for q, n in queues.items())]
            if config.get("node") and not _given(given, None, "--node"):
                defaults += ["--node", str(config["node"])]
            # The settings first: an option the user left without its value is then reported as
            # such, instead of taking the next default as its value.
            argv = ["start", *defaults, *given]
        os.environ[BOOT_ENV] = "oban_bridge.contrib.django:boot"  # every node process sets Django up
        prefix = ["--database-url", database_url(), "--prefix", str(config.get("prefix", "public"))]
        main(args=prefix + argv, prog_name="manage.py oban_bridge", standalone_mode=True)

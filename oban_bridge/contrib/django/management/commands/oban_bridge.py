"""`manage.py oban_bridge <verb> …`: the oban-bridge CLI with Django set up and pointed at Django's
database. `manage.py oban_bridge start` runs the workers; -m and -q default to OBAN_BRIDGE's
`modules` and `queues`; every other verb (migrate, jobs, queues, enqueue …) works as usual."""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import database_url, settings


class Command(BaseCommand):
    help = "Run the oban-bridge CLI (start, jobs, queues, migrate, …) on Django's database."

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
            given = set(argv[1:])
            modules = config.get("modules") or []
            if not given & {"-m", "--module"} and not any(a.startswith("--module=") for a in given):
                if not modules:
                    raise CommandError("no worker modules: pass -m MODULE or set OBAN_BRIDGE['modules']")
                for module in ([modules] if isinstance(modules, str) else modules):
                    argv += ["-m", str(module)]
            queues = config.get("queues")
            if queues and not given & {"-q", "--queues"} and not any(a.startswith("--queues=") for a in given):
                argv += ["-q", queues if isinstance(queues, str) else ",".join(f"{q}:{n}" for q, n in queues.items())]
            if config.get("node") and "--node" not in given:
                argv += ["--node", str(config["node"])]
        os.environ[BOOT_ENV] = "oban_bridge.contrib.django:boot"  # every node process sets Django up
        prefix = ["--database-url", database_url(), "--prefix", str(config.get("prefix", "public"))]
        main(args=prefix + argv, prog_name="manage.py oban_bridge", standalone_mode=True)

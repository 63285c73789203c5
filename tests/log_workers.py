"""A worker module that configures logging itself, as applications do: `oban-bridge start` must
keep its handler (tests/test_cli.py)."""

from __future__ import annotations

import json
import logging
import os

from oban_bridge import Job, worker


class FileJson(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        with open(os.environ["LOG_WORKERS_FILE"], "a") as out:
            out.write(json.dumps({"message": record.getMessage(), "level": record.levelname,
                                  **{k: getattr(record, k, None) for k in ("job_id", "worker", "error")}}) + "\n")


logging.getLogger().addHandler(FileJson())
logging.getLogger().setLevel(logging.INFO)


@worker("py.LogBoom", queue="logq", max_attempts=3)
def boom(job: Job) -> None:
    raise RuntimeError("the log must say this")

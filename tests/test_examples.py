"""The examples' own tests run as their README says, each example in a process of its own (as in
the app it stands for: examples/badge_forge registers worker names this suite's workers also use),
through the pytest plugin users get, on this session's server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("example", "tests"), [("badge_forge", 3), ("fastapi_signup", 1)])
def test_example_passes_its_own_tests(server_url: str, example: str, tests: int) -> None:
    env = {**os.environ, "OBAN_BRIDGE_TEST_DATABASE_URL": server_url}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"examples/{example}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tests} passed" in done.stdout

"""What both sides of a benchmark share: plain Python only (no oban_bridge, no oban), because
bench/peer_obanpy.py imports it inside oban-py's own virtualenv."""

from __future__ import annotations

from pathlib import Path


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def burn(units: int) -> int:
    """Pure-Python arithmetic: holds the GIL the whole time, like most CPU-bound Python."""
    total = 0
    for n in range(units):
        total = (total + n * n) % 1_000_003
    return total

"""Oban's default retry backoff (lib/oban/worker.ex `backoff/1`, lib/oban/backoff.ex).

`15 + 2^attempt` seconds, with the attempt rescaled onto a 20-attempt range when max_attempts is
larger, plus jitter that only ever adds up to 10% (`jitter(mode: :inc)`).
"""

from __future__ import annotations

import random

CLAMPED_MAX = 20


def exponential(attempt: int, *, mult: int = 1, max_pow: int = 10, min_pad: int = 0) -> int:
    return int(min_pad + mult * 2 ** min(attempt, max_pow))


def jitter(time: int, *, mult: float = 0.1, rand: float | None = None) -> int:
    """`Backoff.jitter(time, mode: :inc)`: add `trunc(rand * mult * time)`."""
    r = random.random() if rand is None else rand
    return time + int(r * mult * time)


def default_backoff(attempt: int, max_attempts: int, *, rand: float | None = None) -> int:
    if max_attempts <= CLAMPED_MAX:
        clamped = attempt
    else:
        # Elixir's round/1 rounds half away from zero; Python's round() would round half to even.
        clamped = int(attempt / max_attempts * CLAMPED_MAX + 0.5)
    return jitter(exponential(clamped, mult=1, max_pow=100, min_pad=15), rand=rand)

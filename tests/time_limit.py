"""A wall-clock limit on one test, for suites that talk to servers which may hang."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def time_limit(name: str, seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the test `name` once `seconds` have passed (SIGALRM)."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{name} ran past its {seconds}s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

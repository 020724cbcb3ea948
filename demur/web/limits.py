"""Request limits: body size (declared and actual), and per-key token-bucket rate limits."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable


class BodyTooLarge(Exception):
    """The request body is over the limit (by its Content-Length, or as it arrived)."""

    def __init__(self, limit: int, size: int | None) -> None:
        self.limit = limit
        self.size = size
        told = f"{size} bytes" if size is not None else "more"
        super().__init__(
            f"the request body is {told}, over this server's limit of {limit} bytes; "
            "send fewer or shorter messages (or raise --max-body-bytes)"
        )


class BadContentLength(Exception):
    """The Content-Length header is not a non-negative integer."""


def declared_length(header: str | None) -> int | None:
    """The Content-Length as an int, None when absent; BadContentLength when malformed."""
    if header is None:
        return None
    text = header.strip()
    if not text.isdigit():
        raise BadContentLength(f"Content-Length must be a byte count, got {header!r}")
    return int(text)


async def read_limited(
    chunks: AsyncIterator[bytes], limit: int, declared: int | None = None
) -> bytes:
    """Read a body, refusing it as soon as it is known to exceed `limit`.

    A declared length over the limit is refused before reading anything; a body that grows
    past the limit (chunked, or lying about its length) is refused as soon as it does.
    """
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, None)
        parts.append(chunk)
    return b"".join(parts)


class RateLimiter:
    """A token bucket per key: `rate` requests a second sustained, bursts of `burst`.

    Buckets of keys not seen for a while are forgotten (the least recently used beyond
    `max_keys`), so clients identified by address cannot grow memory without bound.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """The seconds until `key` has a token (0.0 when it has one now); takes nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens, last = bucket
        tokens = min(float(self.burst), tokens + (self._clock() - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


__all__ = ["BadContentLength", "BodyTooLarge", "RateLimiter", "declared_length", "read_limited"]

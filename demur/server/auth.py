"""Bearer API keys, compared in constant time; logs see a key id, never the key. Clients
that keep failing to authenticate are slowed down per address (`AuthFailures`)."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable

from demur.server.errors import ApiError
from demur.web.limits import RateLimiter


def key_id(key: str) -> str:
    """A stable, non-reversible name for a key: 'key-' and 8 hex digits of its SHA-256."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


class ApiKeys:
    """The keys the gateway accepts. Empty means authentication is off."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [(key.encode(), key_id(key)) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, authorization: str | None) -> str | None:
        """The key id for an `Authorization: Bearer KEY` header, or None when it is not valid.

        Every configured key is compared, whatever matched earlier, so the time taken says
        nothing about which key (or how much of one) was right.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = token.strip().encode()
        found = None
        for key, name in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = name
        return found


class AuthFailures:
    """Failed authentications per client address, each address a token bucket.

    An address whose bucket is empty gets 429 before its key is even looked at, so guessing
    keys goes no faster than `rate` a second (after a first burst of `burst`).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._limiter = RateLimiter(rate, burst)

    def check(self, client: str) -> None:
        """429 with Retry-After while `client` has used up its failed attempts."""
        wait = self._limiter.wait(client)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"too many failed authentications from this address ({self.burst}, then "
                f"{self.rate:g} a second); check the API key and retry after {seconds}s",
                type="rate_limit_error",
                code="too_many_failed_authentications",
                headers={"Retry-After": str(seconds)},
            )

    def record(self, client: str) -> None:
        """Count one failed authentication from `client`."""
        self._limiter.acquire(client)


__all__ = ["ApiKeys", "AuthFailures", "key_id"]

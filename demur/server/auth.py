"""Bearer API keys, compared in constant time; logs see a key id, never the key."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


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


__all__ = ["ApiKeys", "key_id"]

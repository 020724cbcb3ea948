"""The ranges every queue backend stores alike: priorities, lease lengths, metadata nesting.

SQLite would store a larger integer than PostgreSQL's `integer` column, and a lease of 1e12
seconds overflows a datetime; checking here, before any backend sees a value, makes SQLite
and PostgreSQL accept and refuse exactly the same tickets, with an `InvalidPayload` that names
the field and the range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from demur.queue.errors import InvalidPayload

# PostgreSQL's `integer`, a signed 32-bit number; SQLite stores it too.
PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
MAX_LEASE_S = 7 * 24 * 3600.0  # a week
DEFAULT_DEPTH = 32  # how deeply ticket metadata may nest (the mapping itself is level 1)


def check_priority(field: str, value: int) -> int:
    """`value` if it is a whole number the queue stores; InvalidPayload naming `field` if not."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayload(f"{field} must be a whole number, got {type(value).__name__}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        # str() of a huge int is slow, or refused past 4300 digits: show its magnitude instead.
        magnitude = f"about {'-' if value < 0 else ''}2**{abs(value).bit_length() - 1}"
        shown = str(value) if abs(value) < 10**24 else magnitude
        raise InvalidPayload(
            f"{field} is {shown}, outside the range the queue stores "
            f"({PRIORITY_MIN} to {PRIORITY_MAX}, a signed 32-bit integer); use a smaller number"
        )
    return value


def check_lease(lease_s: float) -> float:
    """`lease_s` if it is a lease length the queue accepts (> 0 s, at most a week)."""
    if not (isinstance(lease_s, (int, float)) and math.isfinite(lease_s) and lease_s > 0):
        raise InvalidPayload(f"a lease must last > 0 seconds, got {lease_s}")
    if lease_s > MAX_LEASE_S:
        raise InvalidPayload(
            f"a lease of {lease_s:g} seconds is over the limit of {MAX_LEASE_S:g} (a week); "
            "a reviewer renews a lease to keep a ticket longer"
        )
    return float(lease_s)


def check_depth(field: str, value: Any, limit: int) -> None:
    """InvalidPayload when mappings and lists in `value` nest more than `limit` levels deep.

    Walks without recursion, so a structure thousands of levels deep is refused, not a
    RecursionError.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidPayload(
                f"{field} nests more than {limit} levels deep; flatten it, or raise "
                "PayloadLimits(depth=...) for the queue"
            )
        stack.extend((child, depth + 1) for child in children)


__all__ = [
    "DEFAULT_DEPTH",
    "MAX_LEASE_S",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "check_depth",
    "check_lease",
    "check_priority",
]

"""Which hosts count as this machine, and which `Host` header names a server answers to."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1), bracketed or not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for the any-address hosts (0.0.0.0, ::) and the empty host."""
    return host.strip("[]") in ("", "0.0.0.0", "::")


def host_name(header: str) -> str:
    """The name in a `Host` header, lower-case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    name, _, _ = value.partition(":")
    return name.rstrip(".")


def host_allowed(header: str, names: Collection[str]) -> bool:
    """Whether the `Host` header names one of `names` (`*` any, `*.example.org` subdomains)."""
    name = host_name(header)
    if not name:
        return False
    for allowed in names:
        if allowed == "*" or allowed == name:
            return True
        if allowed.startswith("*.") and name.endswith(allowed[1:]):
            return True
    return False


__all__ = ["LOOPBACK_NAMES", "host_allowed", "host_name", "is_loopback", "is_wildcard"]

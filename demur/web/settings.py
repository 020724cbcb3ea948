"""ListenerSettings: how a demur HTTP server treats connections and the clients behind them.

Shared by the gateway (`ServerSettings`) and the reviewer app (`ReviewSettings`): read
timeouts, connection and keep-alive limits, which proxies may name the client, and which
`Host` names the server answers to.
"""

from __future__ import annotations

import ipaddress
import resource

from pydantic import BaseModel, ConfigDict, Field, field_validator

from demur.web.hosts import LOOPBACK_NAMES, is_wildcard

MAX_CONNECTIONS = 1024


def default_max_connections() -> int:
    """1024, or half the process's open-file limit when that is lower, so that a flood of
    connections can never take the descriptors the server needs for anything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))


class ListenerSettings(BaseModel):
    """Connection limits and client trust, with defaults safe for a server on the internet.

    A client has `header_timeout_s` from connecting (or from its next request's first byte)
    to send a request's headers (at most `max_header_bytes`), then `body_timeout_s` to send
    its body; past either it gets 408 and the connection is closed. An idle keep-alive
    connection is closed after `keep_alive_timeout_s`, and after `max_keep_alive_requests`
    requests. At `max_connections` (default: 1024, or half the open-file limit), a new
    connection closes the one that has waited longest for its headers or its next request;
    when every connection is busy it gets 503.

    `trusted_proxies` (addresses or networks; none by default) may name the client in
    `X-Forwarded-For`/`X-Forwarded-Proto`; from anyone else those headers are ignored.
    `allowed_hosts` are the `Host` names served (default: the loopback names and the bound
    host; `*.example.org` matches subdomains, `*` anything); others get 421, which stops
    DNS-rebinding pages from reaching a server on this machine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    max_keep_alive_requests: int = Field(default=1000, ge=1)
    max_connections: int | None = Field(default=None, ge=1)
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network; give e.g. "
                    "10.0.0.5 or 10.0.0.0/24 (the address the proxy connects from)"
                ) from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for entry in value or ():
            if not entry or any(ch in entry for ch in "/ \t@"):
                raise ValueError(
                    f"allowed host {entry!r} is not a host name; give a name or address "
                    "without scheme or port, e.g. demur.example.org, *.example.org or *"
                )
        return value

    @property
    def connection_cap(self) -> int:
        """`max_connections`, or its default for this process."""
        return self.max_connections or default_max_connections()

    def host_names(self, bound: str) -> frozenset[str]:
        """The `Host` names served by a server bound to `bound`, lower-case, without port."""
        if self.allowed_hosts is not None:
            return frozenset(name.lower().strip("[]") for name in self.allowed_hosts)
        names = set(LOOPBACK_NAMES)
        if not is_wildcard(bound):
            names.add(bound.lower().strip("[]"))
        return frozenset(names)


__all__ = ["MAX_CONNECTIONS", "ListenerSettings", "default_max_connections"]

"""The connection and client-trust flags that `demur serve` and `demur review` share."""

from __future__ import annotations

import argparse
from typing import Any


def add_listener_options(sub: argparse.ArgumentParser) -> None:
    """--header-timeout, --body-timeout, --keep-alive-timeout, --max-keep-alive-requests,
    --max-connections, --max-header-bytes, --trusted-proxy and --allowed-host."""
    group = sub.add_argument_group("connections and clients")
    group.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a client has to send a request's headers (10)",
    )
    group.add_argument(
        "--body-timeout", type=float, help="seconds a client has to send a request's body (30)"
    )
    group.add_argument(
        "--keep-alive-timeout", type=float, help="seconds an idle connection stays open (5)"
    )
    group.add_argument("--max-keep-alive-requests", type=int, help="requests per connection (1000)")
    group.add_argument(
        "--max-connections",
        type=int,
        help="open connections at once (1024, or half the open-file limit)",
    )
    group.add_argument("--max-header-bytes", type=int, help="largest request head in bytes (65536)")
    group.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a proxy (address or network) whose X-Forwarded-For names the client; repeat "
        "for more (none: the headers are ignored)",
    )
    group.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer to (*.example.org for subdomains, * for any); repeat "
        "for more (default: localhost, 127.0.0.1, ::1 and --host)",
    )


def listener_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give; those not given keep the settings' defaults."""
    given = {
        "header_timeout_s": args.header_timeout,
        "body_timeout_s": args.body_timeout,
        "keep_alive_timeout_s": args.keep_alive_timeout,
        "max_keep_alive_requests": args.max_keep_alive_requests,
        "max_connections": args.max_connections,
        "max_header_bytes": args.max_header_bytes,
        "trusted_proxies": tuple(args.trusted_proxy) or None,
        "allowed_hosts": tuple(args.allowed_host) or None,
    }
    return {name: value for name, value in given.items() if value is not None}


__all__ = ["add_listener_options", "listener_settings"]

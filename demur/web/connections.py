"""uvicorn's httptools protocol with the connection limits uvicorn lacks.

Each connection moves through phases: `headers` (from connecting, or from a request's first
byte, until its headers are in), `body` (until the body is in), `app` (the response is being
made) and `idle` (a keep-alive connection between requests). A client slower than
`header_timeout_s` or `body_timeout_s` gets 408 and is disconnected, as is one whose headers
pass `max_header_bytes` (431). At the connection cap, a new connection closes the one that
has waited longest in `headers` or `idle`, or, when none is waiting, is refused with 503.
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from demur.errors import MissingDependencyError

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:
    raise MissingDependencyError("httptools", "server", "demur's HTTP servers") from None

Phase = Literal["headers", "body", "app", "idle"]
Refusal = Callable[[int, str], tuple[str, bytes]]
"""(status, message) -> (content type, body) of a response the server writes itself."""


def plain_refusal(status: int, message: str) -> tuple[str, bytes]:
    return "text/plain; charset=utf-8", message.encode()


@dataclass(frozen=True)
class ConnectionLimits:
    """What `GuardedProtocol` enforces; see ListenerSettings for each field's meaning."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024
    keep_alive_timeout_s: float = 5.0
    max_keep_alive_requests: int = 1000
    max_connections: int = 1024
    refusal: Refusal = plain_refusal


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with read timeouts, a header size limit, keep-alive limits and a
    connection cap. `limits` is set on the subclass that `guarded_protocol` makes."""

    limits = ConnectionLimits()
    _warned_at = 0.0  # when a refused connection was last logged (at most one a second)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_timeout_s  # type: ignore[assignment]
        self.phase: Phase = "headers"
        self.since = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._requests = 0

    # --- the phases --------------------------------------------------------------------------

    def _enter(self, phase: Phase, timeout_s: float | None = None) -> None:
        self.phase = phase
        self.since = time.monotonic()
        self._cancel_timer()
        if timeout_s is not None:
            self._timer = self.loop.call_later(timeout_s, self._timed_out, phase)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def waiting(self) -> bool:
        """Whether the connection only waits for a client: no request is being answered."""
        answering = self.cycle is not None and not self.cycle.response_complete
        return self.phase in ("headers", "idle") and not answering and not self.pipeline

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers", self.limits.header_timeout_s)
        others = [
            c
            for c in self.connections
            if c is not self and (not isinstance(c, GuardedProtocol) or c.is_open)
        ]
        if len(others) >= self.limits.max_connections and not self._evict_one(others):
            now = time.monotonic()
            if now - type(self)._warned_at >= 1.0:
                type(self)._warned_at = now
                self.logger.warning(
                    "refused a connection: all %d connections are busy; raise "
                    "--max-connections if the machine can take more",
                    self.limits.max_connections,
                )
            self.refuse(503, "the server has too many connections; retry shortly")

    def _evict_one(self, others: list[Any]) -> bool:
        """Close the connection that has waited longest for a client; False if none waits."""
        waiting = [c for c in others if isinstance(c, GuardedProtocol) and c.waiting]
        if not waiting:
            return False
        # Idle keep-alive connections go first: their clients can reconnect at no loss.
        victim = min(waiting, key=lambda c: (c.phase != "idle", c.since))
        victim.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self.phase in ("headers", "idle"):
            self._header_bytes += len(data)
        super().data_received(data)
        if self.phase == "headers" and self._header_bytes > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            self.refuse(431, f"the request headers are over this server's limit of {limit} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != "headers":  # a connection's first request is timed from connecting
            self._enter("headers", self.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._header_bytes = 0
        self._enter("body", self.limits.body_timeout_s)
        self._requests += 1
        if self._requests >= self.limits.max_keep_alive_requests and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        answered = self.cycle is not None and self.cycle.response_complete
        super().on_message_complete()
        self._enter("idle" if answered else "app")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.phase == "app":
            self._enter("idle")
        # In `body`, the answer came first (401, 413): the body timer still bounds the rest.

    # --- ending connections --------------------------------------------------------------------

    def _timed_out(self, phase: Phase) -> None:
        self._timer = None
        if self.transport.is_closing() or phase != self.phase:
            return
        if phase == "headers":
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False  # a pipelined request is being answered first
            elif self._header_bytes:
                self.refuse(408, "the request headers took too long to arrive")
            else:
                self.close()
        elif phase == "body":
            self.refuse(408, "the request body took too long to arrive")

    def refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless a response has begun) and close the connection."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            content_type, body = self.limits.refusal(status, message)
            head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
            head += [name + b": " + value for name, value in self.server_state.default_headers]
            head += [
                b"content-type: " + content_type.encode(),
                b"content-length: " + str(len(body)).encode(),
                b"connection: close",
            ]
            if status == 503:
                head.append(b"retry-after: 1")
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            if cycle is not None:
                cycle.response_started = True
        self.close()

    def close(self) -> None:
        """Close now; a request still being answered sees its client disconnect."""
        self._cancel_timer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A GuardedProtocol class enforcing `limits`, for uvicorn.Config(http=...)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


__all__ = ["ConnectionLimits", "GuardedProtocol", "Refusal", "guarded_protocol", "plain_refusal"]

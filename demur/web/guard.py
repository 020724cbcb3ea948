"""RequestGuard: the checks every request passes before an endpoint sees it.

- `Host` must name this server (`allowed_hosts`): a page on another site whose name was
  re-pointed at this machine (DNS rebinding) gets 421 instead of an answer.
- With `origins` given, a browser request from another origin (it carries `Origin`) is
  refused with 403 unless the origin is listed; listed origins get CORS headers, and their
  preflight `OPTIONS` requests are answered here.
- A request still running when the server's graceful shutdown runs out is answered 503
  (Retry-After) instead of failing with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demur.web.hosts import host_allowed

Refuse = Callable[[int, str, str], Response]
"""(status, message, code) -> the app's error response."""

_PREFLIGHT_MAX_AGE_S = 600
_SHUTDOWN = "graceful shutdown"  # in the message of uvicorn's cancellation at shutdown


class RequestGuard:
    """ASGI middleware: Host allow-list, cross-origin policy, and 503 at shutdown."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: Collection[str],
        refuse: Refuse,
        origins: Collection[str] | None = None,
        methods: Collection[str] = ("GET", "POST"),
        expose_headers: Collection[str] = (),
        logger: str = "demur.web",
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.refuse = refuse
        self.origins = None if origins is None else frozenset(o.lower() for o in origins)
        self.methods = ", ".join(methods)
        self.expose = ", ".join(expose_headers)
        self.logger = logging.getLogger(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and not host_allowed(host, self.hosts):
            shown = host if len(host) <= 100 else host[:100] + "..."
            message = (
                f"this server does not answer to the host {shown!r}; if that name is meant "
                "to reach it, add it to the allowed hosts (--allowed-host)"
            )
            await self.refuse(421, message, "host_not_allowed")(scope, receive, send)
            return
        origin = headers.get("origin")
        if self.origins is not None and origin is not None:
            if not self._origin_allowed(origin):
                shown = origin if len(origin) <= 100 else origin[:100] + "..."
                message = (
                    f"cross-origin requests from {shown!r} are not allowed; if a web app "
                    "there should call this server, add its origin with --cors-origin"
                )
                await self.refuse(403, message, "cross_origin_refused")(scope, receive, send)
                return
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await self._preflight(origin, headers)(scope, receive, send)
                return
            send = self._with_cors(send, origin)
        await self._run(scope, receive, send)

    def _origin_allowed(self, origin: str) -> bool:
        assert self.origins is not None
        return "*" in self.origins or origin.lower() in self.origins

    def _preflight(self, origin: str, headers: Headers) -> Response:
        cors = {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": self.methods,
            "access-control-max-age": str(_PREFLIGHT_MAX_AGE_S),
            "vary": "Origin",
        }
        requested = headers.get("access-control-request-headers")
        if requested:
            cors["access-control-allow-headers"] = requested
        return Response(status_code=204, headers=cors)

    def _with_cors(self, send: Send, origin: str) -> Send:
        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"access-control-allow-origin", origin.encode("latin-1"))]
                extra.append((b"vary", b"Origin"))
                if self.expose:
                    extra.append((b"access-control-expose-headers", self.expose.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return send_with_cors

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError as exc:
            # uvicorn cancels what is still running when the graceful shutdown runs out, with a
            # message saying so; any other cancellation is not this guard's to answer.
            if not any(_SHUTDOWN in str(arg) for arg in exc.args):
                raise
            self.logger.warning(
                "a request was cut off by the shutdown",
                extra={"demur": {"method": scope["method"], "path": scope["path"]}},
            )
            if started:
                return
            response = self.refuse(
                503, "the server is shutting down; retry the request", "shutting_down"
            )
            response.headers["retry-after"] = "1"
            response.headers["connection"] = "close"
            await response(scope, receive, send)


__all__ = ["Refuse", "RequestGuard"]

"""The gateway's access log and request metrics: one JSON log line per request, with the
fields its endpoint left (`request_log`), and the request counters and latencies."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demur.server.metrics import GatewayMetrics

logger = logging.getLogger("demur.server")

_LOG_KEY = "demur.log"  # per-request fields the endpoint leaves for the access log


def request_log(request: Request) -> dict[str, Any]:
    """The fields the request's access log line will carry; endpoints add to them."""
    fields: dict[str, Any] = request.scope.setdefault(_LOG_KEY, {})
    return fields


class Observe:
    """Outermost middleware: one JSON log line and the metrics of every request.

    Requests are counted under their path when it is one of `paths`, under
    `/v1/models/{model}` for a model, `/v1/demur/tickets/{id}` for a ticket, and under
    "other" for anything else.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope[_LOG_KEY] = fields
        status = 500
        metrics = self.metrics
        metrics.in_flight += 1

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            metrics.in_flight -= 1
            duration = time.perf_counter() - started
            path = scope["path"]
            label = path if path in self.paths else "other"
            if path.startswith("/v1/models/"):
                label = "/v1/models/{model}"
            elif path.startswith("/v1/demur/tickets/"):
                label = "/v1/demur/tickets/{id}"
            metrics.request(scope["method"], label, status, duration)
            if logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                record = {
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "client": client[0] if client else None,
                    **fields,
                }
                logger.info("request", extra={"demur": record})


__all__ = ["Observe", "request_log"]

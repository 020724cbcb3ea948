"""Fixtures for the HTTP plumbing tests: a toy app served by uvicorn on a free loopback port
with demur's connection limits, raw sockets to play slow clients, and a time limit."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from demur.web.serving import ListeningServer, ThreadedServer, uvicorn_config
from demur.web.settings import ListenerSettings
from tests.time_limit import time_limit

TEST_TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    with time_limit(request.node.name, TEST_TIMEOUT_S):
        yield


async def _hello(request: Request) -> Response:
    return JSONResponse({"client": request.client.host if request.client else None})


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


async def _refuse(request: Request) -> Response:
    return JSONResponse({"error": "no"}, status_code=401)  # answers before reading the body


async def _slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "30")))
    return JSONResponse({"slept": True})


def toy_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", _hello),
            Route("/echo", _echo, methods=["POST"]),
            Route("/refuse", _refuse, methods=["POST"]),
            Route("/slow", _slow),
        ]
    )


@contextmanager
def serving(
    app: Starlette | None = None, shutdown_timeout_s: float = 5.0, **listener: Any
) -> Iterator[ThreadedServer]:
    """`app` (the toy app by default) on a free loopback port, with `listener`'s limits."""
    config = uvicorn_config(
        app or toy_app(),
        "127.0.0.1",
        0,
        "warning",
        shutdown_timeout_s,
        ListenerSettings(**listener),
    )
    server = ThreadedServer(
        ListeningServer(config, "demur.web"), host="127.0.0.1", what="toy app", thread="toy"
    )
    with server:
        yield server


def connect(server: ThreadedServer, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def trickle(sock: socket.socket, data: bytes, every_s: float, until_s: float) -> float:
    """Send `data` a byte every `every_s` until the server answers (or closes) or `until_s`
    passes; the seconds that took. The answer is left to read."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > until_s:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        readable, _, _ = select.select([sock], [], [], every_s)
        if readable:
            break
    return time.monotonic() - started

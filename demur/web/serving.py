"""Serving a Starlette app with uvicorn, shared by the gateway and the reviewer app.

JSON-lines logs, one uvicorn configuration, a server that logs where it listens, running in
the foreground until SIGTERM or Ctrl-C, and running on a daemon thread for tests and examples.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any, Self

from demur.errors import ConfigError, MissingDependencyError

try:
    import uvicorn
except ImportError:
    raise MissingDependencyError("uvicorn", "server", "demur's HTTP servers") from None

from starlette.applications import Starlette

from demur.web.connections import ConnectionLimits, Refusal, guarded_protocol, plain_refusal
from demur.web.settings import ListenerSettings


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, and the record's `demur` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "demur", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(
    loggers: Sequence[str], level: str = "info", stream: IO[str] | None = None
) -> None:
    """Send `loggers`' records to `stream` (stderr) as JSON lines, and only there."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in loggers:
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def uvicorn_config(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    shutdown_timeout_s: float,
    listener: ListenerSettings | None = None,
    refusal: Refusal = plain_refusal,
) -> uvicorn.Config:
    """uvicorn's settings for demur's apps, which log their own requests as JSON.

    Connections get `listener`'s read timeouts and limits (`refusal` renders the 408, 431
    and 503 answers the server writes itself). Forwarded headers are believed only from
    `listener.trusted_proxies`.
    """
    listener = listener or ListenerSettings()
    limits = ConnectionLimits(
        header_timeout_s=listener.header_timeout_s,
        body_timeout_s=listener.body_timeout_s,
        max_header_bytes=listener.max_header_bytes,
        keep_alive_timeout_s=listener.keep_alive_timeout_s,
        max_keep_alive_requests=listener.max_keep_alive_requests,
        max_connections=listener.connection_cap,
        refusal=refusal,
    )
    proxies = list(listener.trusted_proxies)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        ws="none",
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(shutdown_timeout_s),
        timeout_keep_alive=math.ceil(listener.keep_alive_timeout_s),
        server_header=False,
        # uvicorn otherwise believes X-Forwarded-For from 127.0.0.1 (or $FORWARDED_ALLOW_IPS).
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or [],
    )


# Collect the youngest generation every this many allocations instead of CPython's 700.
SERVING_GC_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Garbage-collector settings for a process that serves requests until it stops.

    A request allocates hundreds of short-lived objects, so CPython's defaults collect the
    young generation every request or two and, every few thousand requests, walk the whole
    heap (the app, the router, OpenTelemetry, pydantic's schemas: hundreds of thousands of
    objects) in a full collection. What is alive once the server has started is frozen out of
    the collector's walks, and the young generation is collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVING_GC_THRESHOLD, 10, 10)


class ListeningServer(uvicorn.Server):
    """uvicorn's server that knows its port and logs where it listens to `logger`.

    With `tune_gc` (a process of its own, as `run_in_foreground` runs it) the garbage
    collector is tuned for serving once the server has started.
    """

    def __init__(self, config: uvicorn.Config, logger: str) -> None:
        super().__init__(config)
        self.logger = logger
        self.tune_gc = False

    @property
    def port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    def listening_fields(self) -> dict[str, Any]:
        """Extra fields for the 'listening' log line."""
        return {}

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.tune_gc:
            tune_gc_for_serving()
        if self.started:
            host = self.config.host
            url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
            logging.getLogger(self.logger).info(
                "listening", extra={"demur": {"url": url, **self.listening_fields()}}
            )

    def request_stop(self) -> None:
        """Ask the server to stop, as a thread's owner does (SIGTERM does the same)."""
        self.should_exit = True


def run_in_foreground(server: ListeningServer, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; ConfigError when the address cannot be served.

    The process is the server's own, so its garbage collector is tuned for serving.
    """
    server.tune_gc = True
    with _sigterm_ends_quietly():
        try:
            server.run()
        except SystemExit:
            raise ConfigError(
                f"could not serve on {host}:{port}; the log above says why "
                "(often: another process uses the port; pick another with --port)"
            ) from None


@contextmanager
def _sigterm_ends_quietly() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM it handled once drained; by then it means 'exit 0'."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ThreadedServer:
    """A ListeningServer on a daemon thread: `start()` returns once the port is open."""

    def __init__(self, server: ListeningServer, *, host: str, what: str, thread: str) -> None:
        self._server = server
        self._what = what
        self._thread = threading.Thread(target=self._run, name=thread, daemon=True)
        self._error: BaseException | None = None
        self.host = host

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start serving; returns once the port is open. RuntimeError if it failed."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self._what} did not start within {timeout_s:g}s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the {self._what} failed to start: {self._error!r}")
        return self

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving; requests in flight finish first (up to the shutdown timeout)."""
        self._server.request_stop()
        self._thread.join(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

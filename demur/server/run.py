"""Running the gateway with uvicorn: in the foreground (`serve`) or on a background thread.

`serve()` is what `demur serve` runs. On SIGTERM or Ctrl-C uvicorn stops accepting
connections, lets requests in flight finish (up to `shutdown_timeout_s`), then the app
shuts down and the router is closed; `/readyz` answers 503 from the signal on. Logs are JSON
lines on stderr: one per request (logger `demur.server`) and uvicorn's own messages.

    with BackgroundServer(create_app(router)) as server:   # tests, examples, notebooks
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import IO, Any

from opentelemetry import trace

from demur.errors import ConfigError, MissingDependencyError
from demur.router.router import Router
from demur.server.app import Gateway, create_app
from demur.server.settings import ServerSettings

try:
    import uvicorn
except ImportError:
    raise MissingDependencyError("uvicorn", "server", "The demur gateway") from None

from starlette.applications import Starlette

_LOGGERS = ("demur.server", "uvicorn", "uvicorn.error")


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


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the gateway's and uvicorn's logs to `stream` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in _LOGGERS:
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


class _Server(uvicorn.Server):
    """uvicorn's server, marking the gateway as draining as soon as shutdown is asked for."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.draining = True
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        self.gateway.draining = True
        self.should_exit = True

    @property
    def port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host = self.config.host
            url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
            logging.getLogger("demur.server").info(
                "listening",
                extra={"demur": {"url": url, "models": list(self.gateway.router.models)}},
            )


def _config(
    app: Starlette, host: str, port: int, log_level: str, shutdown_timeout_s: float
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        access_log=False,  # the gateway logs each request itself, as JSON
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(shutdown_timeout_s),
        server_header=False,
    )


def serve(
    router: Router,
    settings: ServerSettings | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    owns_router: bool = True,
    log_stream: IO[str] | None = None,
) -> None:
    """Serve `router` until SIGTERM or Ctrl-C, then drain in-flight requests and return.

    ConfigError when the settings are unsafe (no keys on a public host) or the address is
    taken. A SIGTERM ends the process normally once drained; Ctrl-C raises KeyboardInterrupt
    afterwards, as uvicorn re-delivers it.
    """
    settings = settings or ServerSettings()
    configure_logging(settings.log_level, log_stream)
    app = create_app(router, settings, tracer_provider=tracer_provider, owns_router=owns_router)
    config = _config(
        app, settings.host, settings.port, settings.log_level, settings.shutdown_timeout_s
    )
    server = _Server(config, app.state.gateway)
    with _sigterm_ends_quietly():
        try:
            server.run()
        except SystemExit:
            raise ConfigError(
                f"could not serve on {settings.host}:{settings.port}; the log above says why "
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


class BackgroundServer:
    """Serves an ASGI app with uvicorn on a daemon thread; port 0 picks a free port.

    with BackgroundServer(create_app(router)) as server:
        print(server.base_url)      # http://127.0.0.1:PORT/v1
    """

    def __init__(
        self,
        app: Starlette,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout_s: float = 5.0,
    ) -> None:
        gateway = getattr(app.state, "gateway", None)
        if not isinstance(gateway, Gateway):
            raise ConfigError("BackgroundServer serves apps made by demur.server.create_app")
        config = _config(app, host, port, gateway.settings.log_level, shutdown_timeout_s)
        self._server = _Server(config, gateway)
        self._thread = threading.Thread(target=self._run, name="demur-gateway", daemon=True)
        self._error: BaseException | None = None
        self.host = host

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the port is open. RuntimeError if it failed."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the gateway did not start within {timeout_s:g}s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the gateway failed to start: {self._error!r}")
        return self

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: pass it to `openai.OpenAI(base_url=...)`."""
        return f"{self.url}/v1"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain and stop; in-flight requests finish first (up to the settings' timeout)."""
        self._server.drain()
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["BackgroundServer", "JsonFormatter", "configure_logging", "serve"]

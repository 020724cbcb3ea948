"""Running the reviewer app with uvicorn: in the foreground (`serve_review`) or on a thread.

serve_review(SqliteQueue(".demur/queue.db"), ReviewSettings())   # what `demur review` runs

with ReviewServer(create_review_app(queue, settings)) as server:  # tests, examples
    print(server.url)                                              # http://127.0.0.1:PORT
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

from demur.errors import ConfigError, MissingDependencyError
from demur.queue.base import ReviewQueue
from demur.review.app import create_review_app
from demur.review.settings import ReviewSettings
from demur.server.run import JsonFormatter, _sigterm_ends_quietly

try:
    import uvicorn
except ImportError:
    raise MissingDependencyError("uvicorn", "server", "The demur reviewer app") from None

from starlette.applications import Starlette

_LOGGERS = ("demur.review", "uvicorn", "uvicorn.error")


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the app's and uvicorn's logs to `stream` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in _LOGGERS:
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def _config(app: Starlette, host: str, port: int, settings: ReviewSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,  # the app logs sign-ins and resolutions itself, as JSON
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
        server_header=False,
    )


class _Server(uvicorn.Server):
    @property
    def port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host = self.config.host
            url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
            logging.getLogger("demur.review").info("listening", extra={"demur": {"url": url}})


def serve_review(
    queue: ReviewQueue,
    settings: ReviewSettings | None = None,
    *,
    owns_queue: bool = True,
    log_stream: IO[str] | None = None,
) -> None:
    """Serve the reviewer app for `queue` until SIGTERM or Ctrl-C.

    ConfigError when no reviewer token is configured or the address is taken.
    """
    settings = settings or ReviewSettings()
    configure_logging(settings.log_level, log_stream)
    app = create_review_app(queue, settings, owns_queue=owns_queue)
    if settings.cookies_secure:
        logging.getLogger("demur.review").warning(
            "session cookies are marked Secure: serve this app behind HTTPS (a TLS-terminating "
            "proxy), or browsers will not send them back and nobody can sign in"
        )
    server = _Server(_config(app, settings.host, settings.port, settings))
    with _sigterm_ends_quietly():
        try:
            server.run()
        except SystemExit:
            raise ConfigError(
                f"could not serve on {settings.host}:{settings.port}; the log above says why "
                "(often: another process uses the port; pick another with --port)"
            ) from None


class ReviewServer:
    """Serves a reviewer app with uvicorn on a daemon thread; port 0 picks a free port."""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        review = getattr(app.state, "review", None)
        if review is None:
            raise ConfigError("ReviewServer serves apps made by demur.review.create_review_app")
        self._server = _Server(_config(app, host, port, review.settings))
        self._thread = threading.Thread(target=self._run, name="demur-review", daemon=True)
        self._error: BaseException | None = None
        self.host = host

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout_s: float = 30.0) -> ReviewServer:
        """Start serving; returns once the port is open. RuntimeError if it failed."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the reviewer app did not start within {timeout_s:g}s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the reviewer app failed to start: {self._error!r}")
        return self

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["ReviewServer", "configure_logging", "serve_review"]

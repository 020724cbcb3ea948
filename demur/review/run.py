"""Running the reviewer app with uvicorn: in the foreground (`serve_review`) or on a thread.

serve_review(SqliteQueue(".demur/queue.db"), ReviewSettings())   # what `demur review` runs

with ReviewServer(create_review_app(queue, settings)) as server:  # tests, examples
    print(server.url)                                              # http://127.0.0.1:PORT
"""

from __future__ import annotations

import logging
from typing import IO

from starlette.applications import Starlette

from demur.errors import ConfigError
from demur.queue.base import ReviewQueue
from demur.review import errors
from demur.review.app import create_review_app
from demur.review.settings import ReviewSettings
from demur.web.serving import (
    ListeningServer,
    ThreadedServer,
    configure_json_logging,
    run_in_foreground,
    uvicorn_config,
)

_LOGGERS = ("demur.review", "uvicorn", "uvicorn.error")


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the app's and uvicorn's logs to `stream` (stderr) as JSON lines."""
    configure_json_logging(_LOGGERS, level, stream)


def _server(app: Starlette, host: str, port: int, settings: ReviewSettings) -> ListeningServer:
    config = uvicorn_config(
        app,
        host,
        port,
        settings.log_level,
        settings.shutdown_timeout_s,
        settings,
        errors.connection_refusal,
    )
    return ListeningServer(config, "demur.review")


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
    server = _server(app, settings.host, settings.port, settings)
    run_in_foreground(server, settings.host, settings.port)


class ReviewServer(ThreadedServer):
    """Serves a reviewer app with uvicorn on a daemon thread; port 0 picks a free port."""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        review = getattr(app.state, "review", None)
        if review is None:
            raise ConfigError("ReviewServer serves apps made by demur.review.create_review_app")
        server = _server(app, host, port, review.settings)
        super().__init__(server, host=host, what="reviewer app", thread="demur-review")


__all__ = ["ReviewServer", "configure_logging", "serve_review"]

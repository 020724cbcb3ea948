"""Running the gateway with uvicorn: in the foreground (`serve`) or on a background thread.

`serve()` is what `demur serve` runs. On SIGTERM or Ctrl-C the gateway drains: it keeps
listening, `/readyz` answers 503 and new questions get a clean 503 `shutting_down`, while the
routes in flight get `shutdown_timeout_s` to finish; those still running then get the same
503. Once none is left uvicorn closes the connections, the app shuts down and the router is
closed. A second Ctrl-C quits at once. Logs are JSON lines on stderr: one per request (logger
`demur.server`) and uvicorn's own messages.

    with BackgroundServer(create_app(router)) as server:   # tests, examples, notebooks
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
"""

from __future__ import annotations

from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import trace
from starlette.applications import Starlette

from demur.errors import ConfigError
from demur.router.router import Router
from demur.server.app import Gateway, create_app
from demur.server.errors import connection_refusal
from demur.server.settings import ServerSettings
from demur.web.serving import (
    JsonFormatter,
    ListeningServer,
    ThreadedServer,
    configure_json_logging,
    run_in_foreground,
    uvicorn_config,
)

if TYPE_CHECKING:
    import uvicorn

_LOGGERS = ("demur.server", "uvicorn", "uvicorn.error")


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the gateway's and uvicorn's logs to `stream` (stderr) as JSON lines."""
    configure_json_logging(_LOGGERS, level, stream)


class _Server(ListeningServer):
    """uvicorn's server, which drains the gateway (up to `drain_s`) before it stops listening."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway, drain_s: float) -> None:
        super().__init__(config, "demur.server")
        self.gateway = gateway
        gateway.drain.window_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.begin_drain()
        super().handle_exit(sig, frame)

    def request_stop(self) -> None:
        self.gateway.begin_drain()
        super().request_stop()

    async def on_tick(self, counter: int) -> bool:
        """Stop once asked to and the drain is over (at once on a forced exit)."""
        stopping = await super().on_tick(counter)
        if not stopping or self.force_exit:
            return stopping
        return self.gateway.drain.finished()

    def listening_fields(self) -> dict[str, Any]:
        return {"models": list(self.gateway.router.models)}


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
    config = uvicorn_config(
        app,
        settings.host,
        settings.port,
        settings.log_level,
        settings.shutdown_timeout_s,
        settings,
        connection_refusal,
    )
    server = _Server(config, app.state.gateway, settings.shutdown_timeout_s)
    run_in_foreground(server, settings.host, settings.port)


class BackgroundServer(ThreadedServer):
    """Serves a gateway app with uvicorn on a daemon thread; port 0 picks a free port.

    with BackgroundServer(create_app(router)) as server:
        print(server.base_url)      # http://127.0.0.1:PORT/v1

    `stop()` drains: routes in flight get `shutdown_timeout_s` to finish, then a 503.
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
        config = uvicorn_config(
            app,
            host,
            port,
            gateway.settings.log_level,
            shutdown_timeout_s,
            gateway.settings,
            connection_refusal,
        )
        super().__init__(
            _Server(config, gateway, shutdown_timeout_s),
            host=host,
            what="gateway",
            thread="demur-gateway",
        )

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: pass it to `openai.OpenAI(base_url=...)`."""
        return f"{self.url}/v1"


__all__ = ["BackgroundServer", "JsonFormatter", "configure_logging", "serve"]

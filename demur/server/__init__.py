"""The demur gateway: an OpenAI-compatible HTTP server whose answers are router verdicts.

Needs the `server` extra: `pip install 'demur[server]'`. See `demur.server.app` for the
endpoints and the status codes, `demur serve --help` for the command.
"""

from demur.errors import MissingDependencyError

try:
    import starlette  # noqa: F401  (every module of the gateway needs it)
except ImportError:
    raise MissingDependencyError("starlette", "server", "The demur gateway") from None

from demur.server.app import Gateway, create_app
from demur.server.errors import ApiError
from demur.server.run import BackgroundServer, serve
from demur.server.settings import ServerSettings

__all__ = ["ApiError", "BackgroundServer", "Gateway", "ServerSettings", "create_app", "serve"]

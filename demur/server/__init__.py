"""The demur gateway: an OpenAI-compatible HTTP server whose answers are router verdicts.

Needs the `server` extra: `pip install 'demur[server]'`. See `demur.server.app` for the
endpoints and the status codes, `demur serve --help` for the command.
"""

from demur.server.app import ApiError, Gateway, create_app
from demur.server.run import BackgroundServer, serve
from demur.server.settings import ServerSettings

__all__ = ["ApiError", "BackgroundServer", "Gateway", "ServerSettings", "create_app", "serve"]

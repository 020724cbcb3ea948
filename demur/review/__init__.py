"""The reviewer web app: people claim, read and resolve the review queue's tickets in a browser.

Needs the `server` extra: `pip install 'demur[server]'`. See `demur.review.app` for the
routes and the status codes, `demur review --help` for the command.
"""

from demur.errors import MissingDependencyError

try:
    import starlette  # noqa: F401  (every module of the app needs it)
except ImportError:
    raise MissingDependencyError("starlette", "server", "The demur reviewer app") from None

from demur.review.app import create_review_app
from demur.review.routes import ReviewApp
from demur.review.run import ReviewServer, serve_review
from demur.review.settings import ReviewSettings

__all__ = ["ReviewApp", "ReviewServer", "ReviewSettings", "create_review_app", "serve_review"]

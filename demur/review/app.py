"""The reviewer web app: people answer the questions the router was not sure about.

    app = create_review_app(SqliteQueue(".demur/queue.db"), ReviewSettings(tokens={TOKEN: "ana"}))
    # serve it with demur.review.serve_review(...), `demur review`, or any ASGI server

- `GET /login`, `POST /login`: sign in with a reviewer token; `POST /logout` signs out.
- `GET /`: open tickets in claim order (priority, nearest deadline, oldest); filters `q` (text)
  and `min_priority`; `offset` pages.
- `GET /tickets/{id}`: the question, the context, every candidate with its confidence and
  per-estimator scores, the reason, the trace id, the priority and the deadline.
- `POST /tickets/{id}/claim`: lease the ticket; the lease token stays in the server-side
  session, never in a page.
- `POST /tickets/{id}/resolve`: `action` approve (`candidate`), edit (`text`, `candidate`),
  answer (`text`) or reject, with an optional `note`.
- `POST /tickets/{id}/release`, `POST /tickets/{id}/renew`: give the ticket back unresolved;
  extend the lease.

Answers: 303 to `/login` without a session; 403 when the CSRF token or the origin is wrong;
404 for an unknown ticket; 409 when the lease expired, someone else holds the ticket, or it is
already closed; 400 for a malformed form or invalid UTF-8; 413 for a body over
`max_body_bytes`; 415 for a body that is not a urlencoded form; 429 after too many sign-ins.
Every page is HTML in which all text from a model, a user or the queue is escaped, served with
a Content-Security-Policy that allows no script at all.

The handlers live in `routes` (pages and ticket actions) and `session` (sign-in, sessions,
CSRF); `errors` has the error pages, `pages` renders the Jinja2 templates in `templates/`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demur.queue.base import ReviewQueue
from demur.review import errors, pages
from demur.review.routes import ReviewApp
from demur.review.settings import ReviewSettings
from demur.web.guard import RequestGuard

# No script may run at all; styles only from this app; forms only post back to it.
# Referrer-Policy "same-origin", not "no-referrer": with the latter browsers send
# `Origin: null` on form posts, which the same-origin check must refuse.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class _SecurityHeaders:
    """Adds the security headers to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_review_app(
    queue: ReviewQueue,
    settings: ReviewSettings | None = None,
    *,
    owns_queue: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """The reviewer app, serving `queue`, as an ASGI app.

    Reviewer tokens are read from `settings` and the environment (`environ`, default
    `os.environ`) now; ConfigError when there is none. With `owns_queue`, the queue is closed
    when the app shuts down.
    """
    settings = settings or ReviewSettings()
    review = ReviewApp(queue, settings, environ=environ)
    pages.environment()  # the templates load now: MissingDependencyError without jinja2
    sign_in = review.sign_in
    ticket = "/tickets/{ticket_id}"
    routes = [
        Route("/login", sign_in.login_form, methods=["GET"]),
        Route("/login", sign_in.login, methods=["POST"]),
        Route("/logout", review.logout, methods=["POST"]),
        Route("/", review.queue_page, methods=["GET"]),
        Route(ticket, review.ticket_page, methods=["GET"]),
        Route(ticket + "/claim", review.claim, methods=["POST"]),
        Route(ticket + "/resolve", review.resolve, methods=["POST"]),
        Route(ticket + "/release", review.release, methods=["POST"]),
        Route(ticket + "/renew", review.renew, methods=["POST"]),
        Route(pages.CSS_PATH, review.stylesheet, methods=["GET"]),
        Route("/healthz", review.healthz, methods=["GET"]),
    ]

    def lifespan(app: Starlette) -> contextlib.AbstractAsyncContextManager[None]:
        return review.lifespan(app, owns_queue=owns_queue)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                RequestGuard,
                hosts=settings.host_names(settings.host),
                refuse=errors.refusal,
                logger="demur.review",
            ),
        ],
        exception_handlers=errors.handlers(sign_in.current, SECURITY_HEADERS),
        lifespan=lifespan,
    )
    app.state.review = review
    return app


__all__ = ["CSP", "SECURITY_HEADERS", "create_review_app"]

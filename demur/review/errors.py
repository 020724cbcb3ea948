"""The reviewer app's errors and error pages.

A handler raises `ReviewError` (an error page: status, title, what to do) or `LoginRequired`
(to the sign-in page and back); `handlers()` turns them, Starlette's 404 and 405, and any
other exception (a 500) into responses. Every page names the signed-in reviewer when there is
one; a 409 for a ticket the reviewer does not hold offers its claim button.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from demur.queue.base import Ticket
from demur.review import pages
from demur.review.auth import Session
from demur.review.pages import ticket_url

logger = logging.getLogger("demur.review")

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ReviewError(Exception):
    """An error page: status, a title, and a message that says what to do.

    `claim` names a ticket whose claim button the page offers (to a signed-in reviewer).
    """

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        claim: str | None = None,
        back: str = "/",
        back_label: str = "Back to the queue",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.claim = claim
        self.back = back
        self.back_label = back_label
        self.headers = dict(headers or {})


class LoginRequired(Exception):
    """No live session: the browser goes to the sign-in page, and comes back after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def missing(ticket_id: str) -> ReviewError:
    """The 404 for a ticket that is not in the queue."""
    shown = ticket_id if len(ticket_id) <= 80 else ticket_id[:79] + "…"
    return ReviewError(404, "Not found", f"There is no ticket {shown!r} in this queue.")


def conflict(ticket: Ticket, reviewer: str, *, lease_ran_out: bool) -> ReviewError:
    """The 409 that says why `reviewer` cannot act on `ticket` now, and what to do."""
    back, label = ticket_url(ticket.id), "Back to the ticket"
    if ticket.status == "resolved":
        return ReviewError(
            409,
            "Already resolved",
            f"Ticket {ticket.id} was already resolved ({ticket.resolution}) by "
            f"{ticket.reviewer}; nothing was changed.",
            back=back,
            back_label=label,
        )
    if ticket.status == "cancelled":
        return ReviewError(
            409,
            "Cancelled",
            f"Ticket {ticket.id} was cancelled (the caller stopped waiting); nothing was changed.",
            back=back,
            back_label=label,
        )
    if ticket.status == "claimed" and ticket.claimed_by != reviewer:
        until = (
            ticket.lease_expires_at.strftime("%H:%M:%S UTC")
            if ticket.lease_expires_at
            else "its lease ends"
        )
        prefix = "Your lease ran out and " if lease_ran_out else ""
        return ReviewError(
            409,
            "Claimed by someone else",
            f"{prefix}{ticket.claimed_by} holds ticket {ticket.id} until {until}; nothing "
            "was changed. Pick another ticket.",
            back=back,
            back_label=label,
        )
    if ticket.status == "claimed":
        return ReviewError(
            409,
            "Claimed in another sign-in",
            f"You hold ticket {ticket.id} from another sign-in (an earlier one, or another "
            "browser); nothing was changed. Claim it here to continue that claim, then resolve it.",
            claim=ticket.id,
            back=back,
            back_label=label,
        )
    title = "Lease expired" if lease_ran_out else "Not claimed"
    message = (
        "Your lease on this ticket ran out, so nothing was changed. It is waiting again: "
        "claim it to resolve it."
        if lease_ran_out
        else "You do not hold this ticket. Claim it first, then resolve it."
    )
    return ReviewError(409, title, message, claim=ticket.id, back=back, back_label=label)


def refusal(status: int, message: str, code: str) -> Response:
    """A page for a request refused before any handler runs (wrong host, shutting down)."""
    titles = {421: "Wrong address", 503: "Shutting down"}
    text = message[:1].upper() + message[1:]
    body = pages.error_page(status, titles.get(status, "Refused"), text)
    return HTMLResponse(body, status_code=status)


def connection_refusal(status: int, message: str) -> tuple[str, bytes]:
    """The text of a 408, 431 or 503 that the server writes on the connection itself."""
    return "text/plain; charset=utf-8", (message[:1].upper() + message[1:] + ".\n").encode()


def handlers(
    current: Callable[[Request], Session | None], security_headers: Mapping[str, str]
) -> dict[type[Exception], Handler]:
    """The app's exception handlers. `current` finds the request's session (for the page's
    header and the claim button); the 500 page, which no middleware wraps, carries
    `security_headers` itself."""

    def page(request: Request, error: ReviewError) -> Response:
        session = current(request)
        body = pages.error_page(
            error.status,
            error.title,
            error.message,
            back=error.back,
            back_label=error.back_label,
            claim=error.claim,
            reviewer=session.reviewer if session else None,
            csrf=session.csrf if session else None,
        )
        return HTMLResponse(body, status_code=error.status, headers=error.headers)

    async def on_review_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReviewError)
        return page(request, exc)

    async def on_login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        query = urlencode({"next": exc.next_path})
        return RedirectResponse("/login" if exc.next_path == "/" else f"/login?{query}", 303)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        messages = {
            404: "There is no page at this address.",
            405: f"This address does not accept {request.method} requests.",
        }
        error = ReviewError(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            messages.get(exc.status_code, str(exc.detail)),
            headers=exc.headers,
        )
        return page(request, error)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The browser hung up before sending the whole form: nobody will see this page.
        logger.info("the client disconnected before sending the whole request")
        return HTMLResponse("", status_code=400)

    async def on_internal_error(request: Request, exc: Exception) -> Response:
        logger.exception("the reviewer app failed on %s %s", request.method, request.url.path)
        body = pages.error_page(
            500, "Server error", "Something went wrong on the server; the log says what."
        )
        return HTMLResponse(body, status_code=500, headers=dict(security_headers))

    return {
        ReviewError: on_review_error,
        LoginRequired: on_login_required,
        HTTPException: on_http_error,
        ClientDisconnect: on_client_gone,
        Exception: on_internal_error,
    }


__all__ = [
    "LoginRequired",
    "ReviewError",
    "conflict",
    "connection_refusal",
    "handlers",
    "missing",
    "refusal",
]

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from pydantic import ValidationError

from demur.errors import MissingDependencyError, QueueError
from demur.queue.base import Resolution, ReviewQueue, Ticket
from demur.queue.errors import (
    InvalidPayload,
    InvalidTransition,
    LeaseExpired,
    QueueUnavailable,
    TicketNotFound,
)
from demur.review import pages
from demur.review.auth import ReviewerTokens, Session, SessionStore
from demur.review.csrf import FIELD, LOGIN_COOKIE, cross_site, new_token, tokens_match
from demur.review.pages import Filters, Html, ticket_url
from demur.review.settings import ReviewSettings
from demur.web.limits import (
    BadContentLength,
    BodyTooLarge,
    RateLimiter,
    declared_length,
    read_limited,
)

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError:
    raise MissingDependencyError("starlette", "server", "The demur reviewer app") from None

logger = logging.getLogger("demur.review")

T = TypeVar("T")

SESSION_COOKIE = "demur_review"
LOGIN_BODY_BYTES = 16 * 1024
MAX_FILTER_CHARS = 1000
_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 16
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

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


class ReviewError(Exception):
    """An error page: status, a title, and a message that says what to do."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        action: Html | None = None,
        back: str = "/",
        back_label: str = "Back to the queue",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.action = action
        self.back = back
        self.back_label = back_label
        self.headers = dict(headers or {})


class LoginRequired(Exception):
    """No live session: the browser goes to the sign-in page, and comes back after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in; "/" for anything that could leave the site."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return "/"
    return value


class ReviewApp:
    """The app's state and endpoints: one queue, its settings, the tokens, and the sessions."""

    def __init__(
        self,
        queue: ReviewQueue,
        settings: ReviewSettings,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.tokens = ReviewerTokens(settings.resolved_tokens(environ))
        self.sessions = SessionStore(
            settings.session_secret,
            ttl_s=settings.session_ttl_s,
            max_sessions=settings.max_sessions,
        )
        self.login_limiter = RateLimiter(settings.login_rate_per_s, settings.login_burst)
        self.secure = settings.cookies_secure
        # `__Host-` cookies are refused by browsers unless Secure, on "/", with no Domain.
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = prefix + SESSION_COOKIE
        self.login_cookie = prefix + LOGIN_COOKIE

    # --- plumbing ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A queue call, in a thread (the queue is synchronous)."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except QueueUnavailable as exc:
            logger.error("the review queue is unavailable: %s", exc)
            raise ReviewError(
                503,
                "Queue unavailable",
                "The review queue cannot be reached right now; try again in a moment.",
            ) from None

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(self.session_cookie))

    def _require(self, request: Request) -> Session:
        session = self._session(request)
        if session is None:
            if request.method in ("GET", "HEAD"):
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            else:
                path = "/"
            raise LoginRequired(path)
        return session

    def _html(
        self, body: Html, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> HTMLResponse:
        return HTMLResponse(str(body), status_code=status, headers=dict(headers or {}))

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")

    async def _form(self, request: Request, limit: int) -> dict[str, str]:
        """The urlencoded form of a POST, read up to `limit` bytes; strict UTF-8."""
        content_type = request.headers.get("content-type", "")
        media, _, params = content_type.partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"') if params else ""
        if media.strip().lower() != _FORM or charset not in ("", "utf-8"):
            raise ReviewError(
                415,
                "Unsupported form",
                f"This page accepts forms sent as {_FORM} in UTF-8, not "
                f"{content_type or 'a body without a Content-Type'}.",
            )
        try:
            declared = declared_length(request.headers.get("content-length"))
            raw = await read_limited(request.stream(), limit, declared)
        except BadContentLength as exc:
            raise ReviewError(400, "Bad request", str(exc)) from None
        except BodyTooLarge:
            raise ReviewError(
                413,
                "Too large",
                f"The form is over this server's limit of {limit // 1024} KiB. Shorten the "
                "answer or the note and send it again.",
            ) from None
        try:
            text = raw.decode("utf-8")
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=_MAX_FIELDS,
            )
        except UnicodeDecodeError:
            raise ReviewError(
                400,
                "Invalid text",
                "The form is not valid UTF-8 text; it was refused and nothing was changed.",
            ) from None
        except ValueError:
            raise ReviewError(
                400, "Bad request", f"The form has more than {_MAX_FIELDS} fields."
            ) from None
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form:
                raise ReviewError(400, "Bad request", f"The form sends {key!r} twice.")
            form[key] = value
        return form

    def _check_origin(self, request: Request) -> None:
        problem = cross_site(request.headers)
        if problem is not None:
            logger.warning("refused a cross-site POST to %s: %s", request.url.path, problem)
            raise ReviewError(
                403,
                "Forbidden",
                f"Refused: {problem}. Use the forms on this site.",
            )

    async def _post(self, request: Request, session: Session) -> dict[str, str]:
        """A signed-in POST's form, after the origin and CSRF checks."""
        self._check_origin(request)
        form = await self._form(request, self.settings.max_body_bytes)
        if not tokens_match(session.csrf, form.get(FIELD)):
            logger.warning(
                "refused a POST to %s without a valid CSRF token",
                request.url.path,
                extra={"demur": {"reviewer": session.reviewer}},
            )
            raise ReviewError(
                403,
                "Forbidden",
                "The form's security token is missing or out of date (it changes each time you "
                "sign in). Reload the page and try again.",
            )
        return form

    # --- signing in and out ------------------------------------------------------------------

    def _login_response(
        self, next_path: str, status: int = 200, error: str | None = None
    ) -> Response:
        token = new_token()
        response = self._html(pages.login_page(token, next_path, error), status)
        self._set_cookie(response, self.login_cookie, token, 3600)
        return response

    async def login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if self._session(request) is not None:
            return RedirectResponse(next_path, 303)
        return self._login_response(next_path)

    async def login(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = self.login_limiter.acquire(address)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise ReviewError(
                429,
                "Too many attempts",
                f"Too many sign-in attempts from this address; wait {seconds} s and try again.",
                back="/login",
                back_label="Back to sign in",
                headers={"Retry-After": str(seconds)},
            )
        self._check_origin(request)
        form = await self._form(request, LOGIN_BODY_BYTES)
        if not tokens_match(request.cookies.get(self.login_cookie), form.get(FIELD)):
            raise ReviewError(
                403,
                "Forbidden",
                "The sign-in form expired or did not come from this site. Reload the sign-in "
                "page and try again.",
                back="/login",
                back_label="Back to sign in",
            )
        next_path = safe_next(form.get("next"))
        reviewer = self.tokens.check(form.get("token"))
        if reviewer is None:
            logger.warning("failed sign-in", extra={"demur": {"client": address}})
            return self._login_response(next_path, 401, "That token is not valid.")
        _, cookie = self.sessions.create(reviewer)
        logger.info("signed in", extra={"demur": {"reviewer": reviewer, "client": address}})
        response = RedirectResponse(next_path, 303)
        self._set_cookie(response, self.session_cookie, cookie, int(self.settings.session_ttl_s))
        self._clear_cookie(response, self.login_cookie)
        return response

    async def logout(self, request: Request) -> Response:
        session = self._require(request)
        await self._post(request, session)
        for ticket_id, token in list(session.leases.items()):
            # Give claimed tickets back rather than leave them locked until the lease ends.
            with contextlib.suppress(QueueError, ReviewError):
                await self._call(self.queue.release, ticket_id, token)
        self.sessions.drop(session)
        logger.info("signed out", extra={"demur": {"reviewer": session.reviewer}})
        response = RedirectResponse("/login", 303)
        self._clear_cookie(response, self.session_cookie)
        return response

    # --- pages -------------------------------------------------------------------------------

    def _filters(self, request: Request) -> Filters:
        params = request.query_params
        text = params.get("q", "").strip()
        if len(text) > MAX_FILTER_CHARS:
            raise ReviewError(
                400, "Bad filter", f"The text filter is over {MAX_FILTER_CHARS} characters."
            )
        if "\x00" in text:
            raise ReviewError(400, "Bad filter", "The text filter contains a NUL character.")
        min_priority = None
        raw = params.get("min_priority", "").strip()
        if raw:
            try:
                min_priority = int(raw)
            except ValueError:
                raise ReviewError(
                    400, "Bad filter", f"Min priority must be a whole number, got {raw!r}."
                ) from None
        raw_offset = params.get("offset", "0").strip() or "0"
        if not raw_offset.isdigit() or int(raw_offset) > 1_000_000:
            raise ReviewError(
                400, "Bad filter", f"Offset must be a small whole number, got {raw_offset!r}."
            )
        return Filters(text=text, min_priority=min_priority, offset=int(raw_offset))

    async def queue_page(self, request: Request) -> Response:
        session = self._require(request)
        filters = self._filters(request)
        size = self.settings.page_size
        found = await self._call(
            self.queue.tickets,
            status=("pending", "claimed"),
            text=filters.text or None,
            min_priority=filters.min_priority,
            order="queue",
            limit=size + 1,
            offset=filters.offset,
        )
        stats = await self._call(self.queue.stats)
        notice = None
        for key, verb in (("resolved", "resolved"), ("released", "released")):
            value = request.query_params.get(key, "")
            if _ID.match(value):
                notice = f"Ticket {value} {verb}."
        body = pages.queue_page(
            found[:size],
            stats,
            filters,
            has_more=len(found) > size,
            page_size=size,
            reviewer=session.reviewer,
            csrf=session.csrf,
            now=datetime.now(UTC),
            notice=notice,
        )
        return self._html(body)

    async def _ticket(self, ticket_id: str) -> Ticket:
        try:
            return await self._call(self.queue.get, ticket_id)
        except TicketNotFound:
            raise _missing(ticket_id) from None

    def _holding(self, session: Session, ticket: Ticket) -> bool:
        """Whether the session holds a live lease on `ticket`; forgets a lease that is gone."""
        if ticket.id not in session.leases:
            return False
        if ticket.status == "claimed" and ticket.claimed_by == session.reviewer:
            return True
        del session.leases[ticket.id]
        return False

    async def ticket_page(self, request: Request) -> Response:
        session = self._require(request)
        ticket_id = request.path_params["ticket_id"]
        ticket = await self._ticket(ticket_id)
        had_lease = ticket.id in session.leases
        holding = self._holding(session, ticket)
        notice = None
        if had_lease and not holding and ticket.is_open:
            notice = "Your lease on this ticket ran out; claim it again to resolve it."
        body = pages.ticket_page(
            ticket,
            reviewer=session.reviewer,
            csrf=session.csrf,
            holding=holding,
            now=datetime.now(UTC),
            notice=notice,
        )
        return self._html(body)

    # --- actions -----------------------------------------------------------------------------

    async def _conflict(self, session: Session, ticket_id: str, lease_ran_out: bool) -> ReviewError:
        """A 409 page that says why the ticket cannot be acted on now, and what to do."""
        session.leases.pop(ticket_id, None)
        ticket = await self._ticket(ticket_id)
        back, label = ticket_url(ticket_id), "Back to the ticket"
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
                f"Ticket {ticket.id} was cancelled (the caller stopped waiting); nothing was "
                "changed.",
                back=back,
                back_label=label,
            )
        if ticket.status == "claimed" and ticket.claimed_by != session.reviewer:
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
                "Claimed elsewhere",
                f"You hold ticket {ticket.id} in another browser session; resolve it there, or "
                "wait for that lease to run out.",
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
        return ReviewError(
            409,
            title,
            message,
            action=pages.claim_button(ticket.id, session.csrf),
            back=back,
            back_label=label,
        )

    async def claim(self, request: Request) -> Response:
        session = self._require(request)
        await self._post(request, session)
        ticket_id = request.path_params["ticket_id"]
        url = ticket_url(ticket_id)
        if session.leases.get(ticket_id):
            ticket = await self._ticket(ticket_id)
            if self._holding(session, ticket):
                return RedirectResponse(url, 303)
        try:
            claim = await self._call(
                self.queue.claim,
                session.reviewer,
                ticket_id=ticket_id,
                lease_s=self.settings.lease_s,
            )
        except TicketNotFound:
            raise _missing(ticket_id) from None
        except InvalidTransition:
            raise await self._conflict(session, ticket_id, lease_ran_out=False) from None
        assert claim is not None  # a claim by id returns the claim or raises
        session.leases[ticket_id] = claim.token
        logger.info(
            "claimed", extra={"demur": {"reviewer": session.reviewer, "ticket_id": ticket_id}}
        )
        return RedirectResponse(url, 303)

    def _resolution(self, form: Mapping[str, str]) -> tuple[Resolution, str | None]:
        action = form.get("action", "")
        if action not in ("approve", "edit", "answer", "reject"):
            raise ReviewError(
                400, "Bad request", "Choose an action: approve, edit, answer or reject."
            )
        raw = form.get("candidate", "").strip()
        candidate = None
        if raw:
            if not raw.isdigit() or len(raw) > 6:
                raise ReviewError(400, "Bad request", f"Candidate must be an index, got {raw!r}.")
            candidate = int(raw)
        # Browsers send textarea line breaks as CRLF; answers keep plain newlines.
        text = form.get("text", "").replace("\r\n", "\n").strip()
        note = form.get("note", "").replace("\r\n", "\n").strip() or None
        if action == "approve" and candidate is None:
            raise ReviewError(400, "Bad request", "Choose the candidate to approve.")
        if action in ("edit", "answer") and not text:
            raise ReviewError(400, "Empty answer", "Write the answer before sending it.")
        try:
            if action == "approve":
                assert candidate is not None
                return Resolution.approve(candidate), note
            if action == "edit":
                return Resolution.edit(text, candidate=candidate), note
            if action == "answer":
                return Resolution.answer(text), note
            return Resolution.reject(), note
        except ValidationError as exc:
            raise ReviewError(400, "Bad request", f"The resolution is invalid: {exc}") from None

    async def _held_lease(self, session: Session, ticket_id: str) -> str:
        """The lease token this session holds on the ticket; 404 or 409 when there is none."""
        token = session.leases.get(ticket_id)
        if token is None:
            await self._ticket(ticket_id)  # 404 first, for a ticket that does not exist
            raise await self._conflict(session, ticket_id, lease_ran_out=False)
        return token

    async def _leased_call(
        self, session: Session, ticket_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """A queue call made under the session's lease, its refusals turned into error pages."""
        try:
            return await self._call(fn, *args, **kwargs)
        except TicketNotFound:
            session.leases.pop(ticket_id, None)
            raise _missing(ticket_id) from None
        except LeaseExpired:
            raise await self._conflict(session, ticket_id, lease_ran_out=True) from None
        except InvalidTransition:
            raise await self._conflict(session, ticket_id, lease_ran_out=False) from None

    async def resolve(self, request: Request) -> Response:
        session = self._require(request)
        form = await self._post(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        resolution, note = self._resolution(form)
        try:
            await self._leased_call(
                session,
                ticket_id,
                self.queue.resolve,
                ticket_id,
                token,
                resolution,
                reviewer=session.reviewer,
                note=note,
            )
        except InvalidPayload as exc:
            raise ReviewError(
                400,
                "Invalid answer",
                f"The queue refused this resolution: {exc}. Nothing was changed; you still hold "
                "the ticket.",
                back=ticket_url(ticket_id),
                back_label="Back to the ticket",
            ) from None
        session.leases.pop(ticket_id, None)
        logger.info(
            "resolved",
            extra={
                "demur": {
                    "reviewer": session.reviewer,
                    "ticket_id": ticket_id,
                    "resolution": resolution.kind,
                }
            },
        )
        return RedirectResponse("/?" + urlencode({"resolved": ticket_id}), 303)

    async def release(self, request: Request) -> Response:
        session = self._require(request)
        await self._post(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        await self._leased_call(session, ticket_id, self.queue.release, ticket_id, token)
        session.leases.pop(ticket_id, None)
        logger.info(
            "released", extra={"demur": {"reviewer": session.reviewer, "ticket_id": ticket_id}}
        )
        return RedirectResponse("/?" + urlencode({"released": ticket_id}), 303)

    async def renew(self, request: Request) -> Response:
        session = self._require(request)
        await self._post(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        claim = await self._leased_call(
            session, ticket_id, self.queue.renew, ticket_id, token, lease_s=self.settings.lease_s
        )
        session.leases[ticket_id] = claim.token
        return RedirectResponse(ticket_url(ticket_id), 303)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            pages.CSS,
            media_type="text/css",
            headers={"cache-control": "public, max-age=3600"},
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # --- error pages -------------------------------------------------------------------------

    def error_response(
        self,
        request: Request,
        status: int,
        title: str,
        message: str,
        *,
        action: Html | None = None,
        back: str = "/",
        back_label: str = "Back to the queue",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        session = self._session(request)
        body = pages.error_page(
            status,
            title,
            message,
            back=back,
            back_label=back_label,
            action=action,
            reviewer=session.reviewer if session else None,
            csrf=session.csrf if session else None,
        )
        return self._html(body, status, headers)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette, *, owns_queue: bool) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns_queue:
                self.queue.close()


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
    ticket = "/tickets/{ticket_id}"
    routes = [
        Route("/login", review.login_form, methods=["GET"]),
        Route("/login", review.login, methods=["POST"]),
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

    async def on_review_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReviewError)
        return review.error_response(
            request,
            exc.status,
            exc.title,
            exc.message,
            action=exc.action,
            back=exc.back,
            back_label=exc.back_label,
            headers=exc.headers,
        )

    async def on_login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = "/login" if exc.next_path == "/" else f"/login?{_next_query(exc.next_path)}"
        return RedirectResponse(target, 303)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        messages = {
            404: "There is no page at this address.",
            405: f"This address does not accept {request.method} requests.",
        }
        return review.error_response(
            request,
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            messages.get(exc.status_code, str(exc.detail)),
            headers=exc.headers,
        )

    async def on_internal_error(request: Request, exc: Exception) -> Response:
        logger.exception("the reviewer app failed on %s %s", request.method, request.url.path)
        body = pages.error_page(
            500, "Server error", "Something went wrong on the server; the log says what."
        )
        return HTMLResponse(str(body), status_code=500, headers=SECURITY_HEADERS)

    def lifespan(app: Starlette) -> contextlib.AbstractAsyncContextManager[None]:
        return review.lifespan(app, owns_queue=owns_queue)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={
            ReviewError: on_review_error,
            LoginRequired: on_login_required,
            HTTPException: on_http_error,
            Exception: on_internal_error,
        },
        lifespan=lifespan,
    )
    app.state.review = review
    return app


def _missing(ticket_id: str) -> ReviewError:
    shown = ticket_id if len(ticket_id) <= 80 else ticket_id[:79] + "…"
    return ReviewError(404, "Not found", f"There is no ticket {shown!r} in this queue.")


def _next_query(path: str) -> str:
    return urlencode({"next": path})


__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "LoginRequired",
    "ReviewApp",
    "ReviewError",
    "create_review_app",
    "safe_next",
]

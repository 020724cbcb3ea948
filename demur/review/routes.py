"""The reviewer app's pages and ticket actions: the queue, a ticket, claim, resolve, release,
renew and sign-out.

Every handler needs a live session (`SignIn.require`), and every POST passes the origin and
CSRF checks (`SignIn.form`) before anything else. A lease token stays in the server-side
session: an action on a ticket succeeds only under the lease this session holds, so one
reviewer can never resolve, release or renew another's claim. Claiming a ticket the signed-in
reviewer already holds (from an earlier sign-in) continues that claim in this session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from demur.errors import QueueError
from demur.queue.base import Resolution, ReviewQueue, Ticket
from demur.queue.errors import (
    InvalidPayload,
    InvalidTransition,
    LeaseExpired,
    QueueUnavailable,
    TicketNotFound,
)
from demur.queue.limits import PRIORITY_MAX, PRIORITY_MIN
from demur.review import pages
from demur.review.auth import Session
from demur.review.errors import ReviewError, conflict, missing
from demur.review.pages import Filters, ticket_url
from demur.review.session import SignIn
from demur.review.settings import ReviewSettings

logger = logging.getLogger("demur.review")

T = TypeVar("T")

MAX_FILTER_CHARS = 1000
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_filters(params: QueryParams) -> Filters:
    """The queue page's filters from its query string; 400 when one is malformed."""
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
        digits = raw[1:] if raw[0] in "+-" else raw
        if not (digits.isascii() and digits.isdigit()):
            shown = raw if len(raw) <= 40 else f"{raw[:40]}..."
            raise ReviewError(
                400, "Bad filter", f"min_priority must be a whole number, got {shown!r}."
            )
        # Past 20 digits it is out of range anyway, and int() of a long string is slow.
        min_priority = int(raw) if len(digits) <= 20 else None
        if min_priority is None or not PRIORITY_MIN <= min_priority <= PRIORITY_MAX:
            shown = raw if len(raw) <= 40 else f"{raw[:40]}..."
            raise ReviewError(
                400,
                "Bad filter",
                f"min_priority must lie between {PRIORITY_MIN} and {PRIORITY_MAX} "
                f"(the priorities the queue stores), got {shown}.",
            )
    raw_offset = params.get("offset", "0").strip() or "0"
    if not raw_offset.isdigit() or int(raw_offset) > 1_000_000:
        raise ReviewError(
            400, "Bad filter", f"Offset must be a small whole number, got {raw_offset!r}."
        )
    return Filters(text=text, min_priority=min_priority, offset=int(raw_offset))


def parse_resolution(form: Mapping[str, str]) -> tuple[Resolution, str | None]:
    """The resolution a resolve form asks for, and its note; 400 when it is malformed."""
    action = form.get("action", "")
    if action not in ("approve", "edit", "answer", "reject"):
        raise ReviewError(400, "Bad request", "Choose an action: approve, edit, answer or reject.")
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


class ReviewApp:
    """The app's state and endpoints: one queue, its settings, and who is signed in."""

    def __init__(
        self,
        queue: ReviewQueue,
        settings: ReviewSettings,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.sign_in = SignIn(settings, environ=environ)

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

    async def _ticket(self, ticket_id: str) -> Ticket:
        try:
            return await self._call(self.queue.get, ticket_id)
        except TicketNotFound:
            raise missing(ticket_id) from None

    def _holding(self, session: Session, ticket: Ticket) -> bool:
        """Whether the session holds a live lease on `ticket`; forgets a lease that is gone."""
        if ticket.id not in session.leases:
            return False
        if ticket.status == "claimed" and ticket.claimed_by == session.reviewer:
            return True
        del session.leases[ticket.id]
        return False

    # --- pages -------------------------------------------------------------------------------

    async def queue_page(self, request: Request) -> Response:
        session = self.sign_in.require(request)
        filters = parse_filters(request.query_params)
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
        return HTMLResponse(body)

    async def ticket_page(self, request: Request) -> Response:
        session = self.sign_in.require(request)
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
        return HTMLResponse(body)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            pages.stylesheet(),
            media_type="text/css",
            headers={"cache-control": "public, max-age=3600"},
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # --- actions -----------------------------------------------------------------------------

    async def _conflict(self, session: Session, ticket_id: str, lease_ran_out: bool) -> ReviewError:
        """A 409 page that says why the ticket cannot be acted on now, and what to do."""
        session.leases.pop(ticket_id, None)
        ticket = await self._ticket(ticket_id)
        return conflict(ticket, session.reviewer, lease_ran_out=lease_ran_out)

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
            raise missing(ticket_id) from None
        except LeaseExpired:
            raise await self._conflict(session, ticket_id, lease_ran_out=True) from None
        except InvalidTransition:
            raise await self._conflict(session, ticket_id, lease_ran_out=False) from None

    async def claim(self, request: Request) -> Response:
        session = self.sign_in.require(request)
        await self.sign_in.form(request, session)
        ticket_id = request.path_params["ticket_id"]
        url = ticket_url(ticket_id)
        # Also for a ticket this reviewer already holds: the queue continues their claim, so a
        # new sign-in picks up where the last one left off.
        try:
            claim = await self._call(
                self.queue.claim,
                session.reviewer,
                ticket_id=ticket_id,
                lease_s=self.settings.lease_s,
            )
        except TicketNotFound:
            raise missing(ticket_id) from None
        except InvalidTransition:
            raise await self._conflict(session, ticket_id, lease_ran_out=False) from None
        assert claim is not None  # a claim by id returns the claim or raises
        session.leases[ticket_id] = claim.token
        logger.info(
            "claimed", extra={"demur": {"reviewer": session.reviewer, "ticket_id": ticket_id}}
        )
        return RedirectResponse(url, 303)

    async def resolve(self, request: Request) -> Response:
        session = self.sign_in.require(request)
        form = await self.sign_in.form(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        resolution, note = parse_resolution(form)
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
        session = self.sign_in.require(request)
        await self.sign_in.form(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        await self._leased_call(session, ticket_id, self.queue.release, ticket_id, token)
        session.leases.pop(ticket_id, None)
        logger.info(
            "released", extra={"demur": {"reviewer": session.reviewer, "ticket_id": ticket_id}}
        )
        return RedirectResponse("/?" + urlencode({"released": ticket_id}), 303)

    async def renew(self, request: Request) -> Response:
        session = self.sign_in.require(request)
        await self.sign_in.form(request, session)
        ticket_id = request.path_params["ticket_id"]
        token = await self._held_lease(session, ticket_id)
        claim = await self._leased_call(
            session, ticket_id, self.queue.renew, ticket_id, token, lease_s=self.settings.lease_s
        )
        session.leases[ticket_id] = claim.token
        return RedirectResponse(ticket_url(ticket_id), 303)

    async def logout(self, request: Request) -> Response:
        session = self.sign_in.require(request)
        await self.sign_in.form(request, session)
        for ticket_id, token in list(session.leases.items()):
            # Give claimed tickets back rather than leave them locked until the lease ends.
            with contextlib.suppress(QueueError, ReviewError):
                await self._call(self.queue.release, ticket_id, token)
        return self.sign_in.sign_out(session)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette, *, owns_queue: bool) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns_queue:
                self.queue.close()


__all__ = ["MAX_FILTER_CHARS", "ReviewApp", "parse_filters", "parse_resolution"]

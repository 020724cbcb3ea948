"""The review-queue contract: tickets, their life cycle, and the operations every backend offers.

A ticket moves through these states:

    pending ──claim──▶ claimed ──resolve──▶ resolved
       ▲                  │
       └──release─────────┤   (an expired lease counts as pending again)
                          │
    pending | claimed ──cancel──▶ cancelled

`claim` hands out a lease: a token valid until `expires_at`. `resolve`, `release` and `renew`
must present that token, so a reviewer whose lease expired (and whose ticket another reviewer
has claimed since) cannot resolve it. A reviewer who claims a ticket they already hold (after
signing in again, say) continues that claim: the same token, with the lease renewed. Every
operation that does not apply to a ticket's state raises a specific `QueueError` subclass that
says what to do instead (see `demur.queue.errors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import Field, ValidationError, field_validator

from demur.queue.errors import InvalidPayload
from demur.queue.limits import DEFAULT_DEPTH, check_depth, check_priority
from demur.types import Score, _Frozen

TicketStatus = Literal["pending", "claimed", "resolved", "cancelled"]
ResolutionKind = Literal["approve", "edit", "reject", "answer"]
TicketOrder = Literal["queue", "newest", "oldest", "resolved"]

STATUSES: tuple[str, ...] = get_args(TicketStatus)
RESOLUTIONS: tuple[str, ...] = get_args(ResolutionKind)
DEFAULT_LEASE_S = 300.0


class CandidateAnswer(_Frozen):
    """A model's answer as a reviewer sees it.

    `scores` maps each estimator to its confidence; `details` keeps every estimator's full
    `Score` (status, raw value, confidence), which `demur queue export` writes for calibration.
    """

    model: str
    text: str
    confidence: float | None = None
    scores: dict[str, float | None] = Field(default_factory=dict)
    details: tuple[Score, ...] = ()


class TicketRequest(_Frozen):
    """What the router (or any caller) sends to the queue.

    `priority`: higher is claimed first; a signed 32-bit integer, the range every backend
    stores (`demur.queue.limits`). `metadata`: JSON values, nested at most
    `PayloadLimits.depth` levels.
    `idempotency_key`: enqueueing twice with the same key returns the first ticket.
    `trace_id` and `span_id` name the route's span, so the resolution is traced under it.
    """

    question: str
    context: tuple[str, ...] = ()
    candidates: tuple[CandidateAnswer, ...] = ()
    reason: str = ""
    trace_id: str | None = None
    span_id: str | None = None
    priority: int = 0
    deadline: datetime | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty; a reviewer needs something to answer")
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("the deadline needs a time zone, e.g. datetime.now(UTC) + timedelta")
        return value


class Resolution(_Frozen):
    """A reviewer's verdict on a ticket.

    - `approve(i)`: candidate `i` is right as it stands.
    - `edit(text, candidate=i)`: candidate `i` was close; `text` is the corrected answer.
    - `answer(text)`: the reviewer wrote the answer.
    - `reject()`: every candidate is wrong and there is no answer to give.
    """

    kind: ResolutionKind
    candidate: int | None = Field(default=None, ge=0)
    text: str | None = None

    @classmethod
    def approve(cls, candidate: int) -> Resolution:
        return cls(kind="approve", candidate=candidate)

    @classmethod
    def edit(cls, text: str, *, candidate: int | None = None) -> Resolution:
        return cls(kind="edit", text=text, candidate=candidate)

    @classmethod
    def answer(cls, text: str) -> Resolution:
        return cls(kind="answer", text=text)

    @classmethod
    def reject(cls) -> Resolution:
        return cls(kind="reject")


class Ticket(TicketRequest):
    """A question waiting for, or answered by, a person.

    `status` is the effective state: a claim whose lease has expired reads as "pending".
    `answer` is the final answer (the approved candidate's text, the edit, or the reviewer's
    own); it stays None for a rejection or a cancellation.
    """

    id: str
    status: TicketStatus = "pending"
    created_at: datetime
    updated_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    claims: int = 0
    resolution: ResolutionKind | None = None
    approved: int | None = None
    answer: str | None = None
    reviewer: str | None = None
    note: str | None = None
    resolved_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """True while a reviewer may still resolve it."""
        return self.status in ("pending", "claimed")


class Claim(_Frozen):
    """A reviewer's lease on a ticket; `token` must accompany resolve, release and renew."""

    ticket: Ticket
    token: str
    expires_at: datetime


class QueueStats(_Frozen):
    """How the queue stands. Expired leases count as pending."""

    counts: dict[str, int]
    total: int
    expired_leases: int = 0
    overdue: int = 0
    oldest_pending_age_s: float | None = None
    mean_resolve_s: float | None = None
    resolutions: dict[str, int] = Field(default_factory=dict)


class TicketFilter(_Frozen):
    """Which tickets `tickets()` returns, and in which order."""

    status: tuple[TicketStatus, ...] = ()
    min_priority: int | None = None
    max_priority: int | None = None
    due_before: datetime | None = None
    text: str | None = None
    claimed_by: str | None = None
    reviewer: str | None = None
    created_since: datetime | None = None
    resolved_since: datetime | None = None
    order: TicketOrder = "queue"
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0)


# --- limits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayloadLimits:
    """Size limits, in UTF-8 bytes, on what a ticket and a resolution may carry.

    `depth` is not a size: how many levels of mappings and lists `metadata` may nest.
    """

    question: int = 32 * 1024
    context: int = 256 * 1024  # all passages together
    candidate: int = 64 * 1024  # each candidate's text
    candidates: int = 32  # how many candidates
    reason: int = 8 * 1024
    answer: int = 64 * 1024  # an edit or a written answer
    note: int = 8 * 1024
    name: int = 256  # reviewer ids, idempotency keys, trace ids
    metadata: int = 16 * 1024
    body: int = 1024 * 1024  # the whole ticket as stored
    depth: int = DEFAULT_DEPTH


DEFAULT_LIMITS = PayloadLimits()


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes"


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(str(key), f"{path} key")
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def check_text(field: str, value: str, limit: int | None = None) -> int:
    """The UTF-8 size of `value`; InvalidPayload if it is not UTF-8, holds NUL, or is too big."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            f"{field} is not valid UTF-8: {exc.reason} at character {exc.start} "
            f"({value[exc.start : exc.end]!r}); decode the text with errors='replace' first"
        ) from None
    if "\x00" in value:
        raise InvalidPayload(
            f"{field} contains a NUL character (\\x00) at position {value.index(chr(0))}, "
            "which the queue's databases cannot store; strip it first"
        )
    if limit is not None and size > limit:
        raise InvalidPayload(
            f"{field} is {_fmt_bytes(size)}, over the limit of {_fmt_bytes(limit)}; "
            "shorten it, or raise PayloadLimits for the queue"
        )
    return size


def _from_validation_error(what: str, exc: ValidationError) -> InvalidPayload:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or what}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
    return InvalidPayload(f"invalid {what}: {problems}")


def coerce_request(request: TicketRequest | Mapping[str, Any]) -> TicketRequest:
    """A TicketRequest from one, or from a mapping (e.g. decoded JSON); InvalidPayload if not."""
    if isinstance(request, TicketRequest):
        return request
    if not isinstance(request, Mapping):
        raise InvalidPayload(
            f"a ticket must be a TicketRequest or a mapping, got {type(request).__name__}"
        )
    try:
        return TicketRequest.model_validate(dict(request))
    except ValidationError as exc:
        raise _from_validation_error("ticket", exc) from None


def request_body(request: TicketRequest, limits: PayloadLimits = DEFAULT_LIMITS) -> str:
    """The JSON the queue stores for a request, after every limit and encoding check."""
    check_priority("ticket.priority", request.priority)
    # Before anything walks it: deep nesting would be a RecursionError there.
    check_depth("ticket.metadata", request.metadata, limits.depth)
    for path, text in _walk(request.model_dump(mode="python"), "ticket"):
        check_text(path, text)
    check_text("ticket.question", request.question, limits.question)
    context = sum(len(p.encode("utf-8")) for p in request.context)
    if context > limits.context:
        raise InvalidPayload(
            f"ticket.context is {_fmt_bytes(context)} over {len(request.context)} passages, "
            f"over the limit of {_fmt_bytes(limits.context)}; send fewer or shorter passages"
        )
    if len(request.candidates) > limits.candidates:
        raise InvalidPayload(
            f"ticket.candidates has {len(request.candidates)} answers, over the limit of "
            f"{limits.candidates}"
        )
    for i, candidate in enumerate(request.candidates):
        check_text(f"ticket.candidates[{i}].text", candidate.text, limits.candidate)
        check_text(f"ticket.candidates[{i}].model", candidate.model, limits.name)
    check_text("ticket.reason", request.reason, limits.reason)
    for field in ("trace_id", "span_id", "idempotency_key"):
        value = getattr(request, field)
        if value is not None:
            check_text(f"ticket.{field}", value, limits.name)
    if request.idempotency_key is not None and not request.idempotency_key.strip():
        raise InvalidPayload("ticket.idempotency_key is blank; give a key or None")
    try:
        metadata = json.dumps(request.metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"ticket.metadata is not JSON-serialisable: {exc}") from None
    check_text("ticket.metadata", metadata, limits.metadata)
    body = request.model_dump_json()
    size = len(body.encode("utf-8"))
    if size > limits.body:
        raise InvalidPayload(
            f"the ticket is {_fmt_bytes(size)} as stored, over the limit of "
            f"{_fmt_bytes(limits.body)}; send less context or fewer candidates"
        )
    return body


def check_resolution(
    ticket_id: str,
    resolution: Resolution,
    candidates: Sequence[CandidateAnswer],
    reviewer: str,
    note: str | None,
    limits: PayloadLimits = DEFAULT_LIMITS,
) -> str | None:
    """The final answer `resolution` gives, after checking it against the ticket and the limits."""
    check_text("reviewer", reviewer, limits.name)
    if not reviewer.strip():
        raise InvalidPayload("reviewer is blank; say who resolved the ticket")
    if note is not None:
        check_text("note", note, limits.note)
    index = resolution.candidate
    if index is not None and index >= len(candidates):
        raise InvalidPayload(
            f"ticket '{ticket_id}' has {len(candidates)} candidate answer(s) (0..."
            f"{len(candidates) - 1}); candidate {index} does not exist"
            if candidates
            else f"ticket '{ticket_id}' has no candidate answer; use Resolution.answer(text)"
        )
    if resolution.kind == "approve":
        if index is None:
            raise InvalidPayload("approve needs the candidate's index: Resolution.approve(0)")
        return candidates[index].text
    if resolution.kind in ("edit", "answer"):
        text = resolution.text
        if text is None or not text.strip():
            raise InvalidPayload(
                f"{resolution.kind} needs a non-empty answer text, e.g. "
                f"Resolution.{resolution.kind}('Paris')"
            )
        check_text("answer", text, limits.answer)
        return text
    if resolution.text is not None:
        raise InvalidPayload("reject carries no answer; use Resolution.answer(text) to give one")
    return None


def coerce_filter(**filters: Any) -> TicketFilter:
    """The TicketFilter of `tickets()`'s arguments; InvalidPayload naming a bad one."""
    for field in ("min_priority", "max_priority"):
        value = filters.get(field)
        if value is not None:
            check_priority(field, value)
    try:
        return TicketFilter(**filters)
    except ValidationError as exc:
        raise _from_validation_error("ticket filter", exc) from None


def coerce_statuses(
    status: TicketStatus | Sequence[TicketStatus] | None,
) -> tuple[TicketStatus, ...]:
    if status is None:
        return ()
    statuses = (status,) if isinstance(status, str) else tuple(status)
    for s in statuses:
        if s not in STATUSES:
            raise InvalidPayload(f"unknown ticket status '{s}'; use one of {', '.join(STATUSES)}")
    return statuses


# --- the contract ----------------------------------------------------------------------------


@runtime_checkable
class ReviewQueue(Protocol):
    """A durable store of tickets. Methods are synchronous; the router calls them in a thread.

    The router itself needs only `enqueue`; reviewers' tools use the rest. It passes the time
    its route has left as `timeout_s` (wait no longer on the store), and `commit_if`, to ask
    just before the commit (on False, store nothing and raise TicketWithdrawn): a route that
    gives up waiting leaves no ticket behind. A queue without them is waited for unbounded.
    """

    def enqueue(
        self,
        request: TicketRequest | Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        commit_if: Callable[[], bool] | None = None,
    ) -> Ticket: ...

    def get(self, ticket_id: str) -> Ticket: ...

    def claim(
        self, reviewer: str, *, ticket_id: str | None = None, lease_s: float | None = None
    ) -> Claim | None: ...

    def renew(self, ticket_id: str, token: str, *, lease_s: float | None = None) -> Claim: ...

    def release(self, ticket_id: str, token: str) -> Ticket: ...

    def resolve(
        self,
        ticket_id: str,
        token: str,
        resolution: Resolution,
        *,
        reviewer: str | None = None,
        note: str | None = None,
    ) -> Ticket: ...

    def cancel(self, ticket_id: str, *, reason: str | None = None) -> Ticket: ...

    def tickets(
        self,
        *,
        status: TicketStatus | Sequence[TicketStatus] | None = None,
        min_priority: int | None = None,
        max_priority: int | None = None,
        due_before: datetime | None = None,
        text: str | None = None,
        claimed_by: str | None = None,
        reviewer: str | None = None,
        created_since: datetime | None = None,
        resolved_since: datetime | None = None,
        order: TicketOrder = "queue",
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]: ...

    def pending(self, limit: int = 100) -> list[Ticket]: ...

    def stats(self) -> QueueStats: ...

    def close(self) -> None: ...


__all__ = [
    "DEFAULT_LEASE_S",
    "DEFAULT_LIMITS",
    "CandidateAnswer",
    "Claim",
    "PayloadLimits",
    "QueueStats",
    "Resolution",
    "ResolutionKind",
    "ReviewQueue",
    "Ticket",
    "TicketFilter",
    "TicketOrder",
    "TicketRequest",
    "TicketStatus",
]

"""The review queue over SQL: every operation, written once for SQLite and PostgreSQL.

Each state change is one conditional statement (`UPDATE ... WHERE status = ... AND
lease_token = ... RETURNING *`), so it is applied whole or not at all, and two reviewers
racing for the same ticket cannot both win. When the statement changes nothing, the ticket is
read back to explain why. Backends supply the connection, the claim of the next ticket
(`BEGIN IMMEDIATE` in SQLite, `FOR UPDATE SKIP LOCKED` in PostgreSQL), and time conversion.
"""

from __future__ import annotations

import json
import secrets
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from demur._version import __version__
from demur.queue._refusal import refusal
from demur.queue._review_span import review_span
from demur.queue.base import (
    DEFAULT_LEASE_S,
    DEFAULT_LIMITS,
    Claim,
    PayloadLimits,
    QueueStats,
    Resolution,
    Ticket,
    TicketFilter,
    TicketOrder,
    TicketRequest,
    TicketStatus,
    check_resolution,
    check_text,
    coerce_filter,
    coerce_request,
    coerce_statuses,
    request_body,
)
from demur.queue.errors import TicketWithdrawn
from demur.queue.limits import check_lease

Row = dict[str, Any]
Clock = Callable[[], datetime]

OPEN = "status IN ('pending', 'claimed')"
# An expired lease counts as pending; a claim with a live lease is claimed.
EFFECTIVELY_PENDING = "(status = 'pending' OR (status = 'claimed' AND lease_expires_at <= ?))"
EFFECTIVELY_CLAIMED = "(status = 'claimed' AND lease_expires_at > ?)"
ORDERS: dict[str, str] = {
    "newest": "seq DESC",
    "oldest": "seq ASC",
    "resolved": "resolved_at ASC NULLS LAST, seq ASC",
}
CLEAR_LEASE = "claimed_by = NULL, claimed_at = NULL, lease_token = NULL, lease_expires_at = NULL"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlQueue(ABC):
    """Shared implementation of `ReviewQueue`; subclasses talk to one database."""

    table = "tickets"
    like = "LIKE"
    # Higher priority first, then the nearest deadline (none last), then the oldest; each
    # backend spells it the way its index on pending tickets is built.
    queue_order = "priority DESC, deadline ASC NULLS LAST, seq ASC"
    lock = ""  # appended to the claim's SELECTs (PostgreSQL: FOR UPDATE SKIP LOCKED)

    def __init__(
        self,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        limits: PayloadLimits | None = None,
        clock: Clock | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.lease_s = check_lease(lease_s)
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock or _utcnow
        self._tracer = trace.get_tracer("demur", __version__, tracer_provider)

    # --- what a backend supplies -------------------------------------------------------------

    @property
    @abstractmethod
    def where(self) -> str:
        """The queue's location, for messages (a path, or a DSN without its password)."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement in its own transaction; return its rows (SELECT or RETURNING)."""

    @abstractmethod
    def _transaction(
        self, timeout_s: float | None = None
    ) -> AbstractContextManager[Callable[..., list[Row]]]:
        """Run statements in one write transaction: `with self._transaction() as run: ...`.

        `timeout_s` bounds its waits on locks and statements (QueueUnavailable past it).
        """

    @abstractmethod
    def _to_db(self, value: datetime) -> Any: ...

    @abstractmethod
    def _from_db(self, value: Any) -> datetime: ...

    @abstractmethod
    def _seconds_between(self, later: str, earlier: str) -> str:
        """SQL for the seconds from column `earlier` to column `later`."""

    body_param = "?"

    @abstractmethod
    def close(self) -> None:
        """Close this thread's connection; the queue reopens one on next use."""

    # --- helpers -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def _lease(self, lease_s: float | None) -> float:
        return self.lease_s if lease_s is None else check_lease(lease_s)

    def _opt(self, value: datetime | None) -> Any:
        return None if value is None else self._to_db(value)

    def _dt(self, value: Any) -> datetime | None:
        return None if value is None else self._from_db(value)

    def _row(self, ticket_id: str) -> Row | None:
        rows = self._execute(f"SELECT * FROM {self.table} WHERE id = ?", (ticket_id,))
        return rows[0] if rows else None

    def _ticket(self, row: Row, now: datetime) -> Ticket:
        body = row["body"]
        data: dict[str, Any] = json.loads(body) if isinstance(body, (str, bytes)) else dict(body)
        lease_expires_at = self._dt(row["lease_expires_at"])
        status: TicketStatus = row["status"]
        claimed_by, claimed_at = row["claimed_by"], self._dt(row["claimed_at"])
        if status == "claimed" and lease_expires_at is not None and lease_expires_at <= now:
            status, claimed_by, claimed_at, lease_expires_at = "pending", None, None, None
        data.update(
            id=row["id"],
            status=status,
            priority=row["priority"],
            created_at=self._from_db(row["created_at"]),
            updated_at=self._dt(row["updated_at"]),
            claimed_by=claimed_by,
            claimed_at=claimed_at,
            lease_expires_at=lease_expires_at,
            claims=row["claims"],
            resolution=row["resolution"],
            approved=row["approved"],
            answer=row["answer"],
            reviewer=row["reviewer"],
            note=row["note"],
            resolved_at=self._dt(row["resolved_at"]),
        )
        return Ticket.model_validate(data)

    def _claim_next(self, assignments: str, params: Sequence[Any], now: datetime) -> Row | None:
        """Claim the first ticket in queue order among pending ones and expired claims.

        Two indexed lookups (the best pending ticket, the best expired claim) rather than one
        scan of every open ticket: a scan would wade through the live claims first.
        """
        columns = f"SELECT id, priority, deadline, seq FROM {self.table}"
        tail = f"ORDER BY {self.queue_order} LIMIT 1{self.lock}"
        with self._transaction() as run:
            found = run(f"{columns} WHERE status = 'pending' {tail}")
            found += run(
                f"{columns} WHERE status = 'claimed' AND lease_expires_at <= ? {tail}",
                (self._to_db(now),),
            )
            if not found:
                return None
            never = datetime.max.replace(tzinfo=UTC)
            best = min(
                found,
                key=lambda r: (-r["priority"], self._dt(r["deadline"]) or never, r["seq"]),
            )
            rows = run(
                f"UPDATE {self.table} SET {assignments} WHERE id = ? RETURNING *",
                (*params, best["id"]),
            )
        return rows[0]

    def _claim(self, row: Row, now: datetime) -> Claim:
        ticket = self._ticket(row, now)
        assert ticket.lease_expires_at is not None
        return Claim(ticket=ticket, token=row["lease_token"], expires_at=ticket.lease_expires_at)

    def _refuse(self, ticket_id: str, verb: str, token: str | None, now: datetime) -> Exception:
        """Why the conditional update of `ticket_id` matched nothing, as a specific QueueError."""
        row = self._row(ticket_id)
        return refusal(ticket_id, row, verb, token, now, where=self.where, to_datetime=self._dt)

    # --- operations --------------------------------------------------------------------------

    def enqueue(
        self,
        request: TicketRequest | Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        commit_if: Callable[[], bool] | None = None,
    ) -> Ticket:
        """Store a ticket (or return the existing one with the same idempotency key).

        `timeout_s` bounds the wait on the database's locks and statements: past it the enqueue
        raises QueueUnavailable, having stored nothing. `commit_if`, asked just before the
        commit, can still withdraw the ticket (a route that stopped waiting): on False the
        transaction rolls back and TicketWithdrawn is raised.
        """
        request = coerce_request(request)
        body = request_body(request, self.limits)
        now = self._now()
        stamp = self._to_db(now)
        # Without a bound or a last word, each statement commits alone: one round trip for a
        # new ticket (the INSERT), where a transaction would add BEGIN and COMMIT.
        unbounded = timeout_s is None and commit_if is None
        transaction = nullcontext(self._execute) if unbounded else self._transaction(timeout_s)
        with transaction as run:
            rows = run(
                f"INSERT INTO {self.table} (id, idempotency_key, status, priority, deadline, "
                "created_at, updated_at, question, body, claims) "
                f"VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, {self.body_param}, 0) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                (
                    uuid.uuid4().hex,
                    request.idempotency_key,
                    request.priority,
                    self._opt(request.deadline),
                    stamp,
                    stamp,
                    request.question,
                    body,
                ),
            )
            if not rows:  # the key was used before: the first ticket stands
                rows = run(
                    f"SELECT * FROM {self.table} WHERE idempotency_key = ?",
                    (request.idempotency_key,),
                )
            if commit_if is not None and not commit_if():
                raise TicketWithdrawn(
                    f"the ticket was withdrawn before its commit to {self.where}; nothing was "
                    "stored"
                )
        return self._ticket(rows[0], now)

    def get(self, ticket_id: str) -> Ticket:
        """The ticket with this id; TicketNotFound if there is none."""
        row = self._row(ticket_id)
        if row is None:
            raise self._refuse(ticket_id, "read", None, self._now())
        return self._ticket(row, self._now())

    def claim(
        self, reviewer: str, *, ticket_id: str | None = None, lease_s: float | None = None
    ) -> Claim | None:
        """Lease the next ticket in queue order (or `ticket_id`); None when none is waiting.

        Queue order: higher priority first, then the nearest deadline, then the oldest.
        Claiming `ticket_id` that `reviewer` already holds continues their claim: the same
        token, the lease renewed.
        """
        check_text("reviewer", reviewer, self.limits.name)
        now = self._now()
        expires = now + timedelta(seconds=self._lease(lease_s))
        token = secrets.token_hex(16)
        assignments = (
            "status = 'claimed', claimed_by = ?, claimed_at = ?, lease_token = ?, "
            "lease_expires_at = ?, claims = claims + 1, updated_at = ?"
        )
        params = (reviewer, self._to_db(now), token, self._to_db(expires), self._to_db(now))
        if ticket_id is None:
            row = self._claim_next(assignments, params, now)
            return None if row is None else self._claim(row, now)
        rows = self._execute(
            f"UPDATE {self.table} SET {assignments} "
            f"WHERE id = ? AND {OPEN} AND {EFFECTIVELY_PENDING} RETURNING *",
            (*params, ticket_id, self._to_db(now)),
        )
        if not rows:
            # A reviewer who signs in again (or in another browser) has lost the token, not the
            # claim: their own live lease continues rather than locking them out until it ends.
            rows = self._execute(
                f"UPDATE {self.table} SET lease_expires_at = ?, updated_at = ? "
                "WHERE id = ? AND status = 'claimed' AND claimed_by = ? AND lease_expires_at > ? "
                "RETURNING *",
                (self._to_db(expires), self._to_db(now), ticket_id, reviewer, self._to_db(now)),
            )
        if not rows:
            raise self._refuse(ticket_id, "claimed", None, now)
        return self._claim(rows[0], now)

    def renew(self, ticket_id: str, token: str, *, lease_s: float | None = None) -> Claim:
        """Extend a live lease (a reviewer still working on the ticket)."""
        now = self._now()
        expires = now + timedelta(seconds=self._lease(lease_s))
        rows = self._execute(
            f"UPDATE {self.table} SET lease_expires_at = ?, updated_at = ? "
            "WHERE id = ? AND status = 'claimed' AND lease_token = ? AND lease_expires_at > ? "
            "RETURNING *",
            (self._to_db(expires), self._to_db(now), ticket_id, token, self._to_db(now)),
        )
        if not rows:
            raise self._refuse(ticket_id, "renewed", token, now)
        return self._claim(rows[0], now)

    def release(self, ticket_id: str, token: str) -> Ticket:
        """Give a claimed ticket back to the queue unresolved."""
        now = self._now()
        rows = self._execute(
            f"UPDATE {self.table} SET status = 'pending', {CLEAR_LEASE}, updated_at = ? "
            "WHERE id = ? AND status = 'claimed' AND lease_token = ? RETURNING *",
            (self._to_db(now), ticket_id, token),
        )
        if not rows:
            raise self._refuse(ticket_id, "released", token, now)
        return self._ticket(rows[0], now)

    def resolve(
        self,
        ticket_id: str,
        token: str,
        resolution: Resolution,
        *,
        reviewer: str | None = None,
        note: str | None = None,
    ) -> Ticket:
        """Record a reviewer's verdict on a ticket they hold a live lease on.

        `reviewer` defaults to whoever claimed the ticket.
        """
        now = self._now()
        row = self._row(ticket_id)
        if row is None or row["status"] != "claimed" or row["lease_token"] != token:
            raise self._refuse(ticket_id, "resolved", token, now)
        candidates = self._ticket(row, now).candidates
        who = reviewer if reviewer is not None else str(row["claimed_by"])
        answer = check_resolution(ticket_id, resolution, candidates, who, note, self.limits)
        rows = self._execute(
            f"UPDATE {self.table} SET status = 'resolved', resolution = ?, approved = ?, "
            f"answer = ?, reviewer = ?, note = ?, resolved_at = ?, updated_at = ?, {CLEAR_LEASE} "
            "WHERE id = ? AND status = 'claimed' AND lease_token = ? AND lease_expires_at > ? "
            "RETURNING *",
            (
                resolution.kind,
                resolution.candidate,
                answer,
                who,
                note,
                self._to_db(now),
                self._to_db(now),
                ticket_id,
                token,
                self._to_db(now),
            ),
        )
        if not rows:
            raise self._refuse(ticket_id, "resolved", token, now)
        ticket = self._ticket(rows[0], now)
        review_span(self._tracer, ticket, now)
        return ticket

    def cancel(self, ticket_id: str, *, reason: str | None = None) -> Ticket:
        """Withdraw an open ticket (pending or claimed); `reason` is kept as its note."""
        if reason is not None:
            check_text("reason", reason, self.limits.note)
        now = self._now()
        rows = self._execute(
            f"UPDATE {self.table} SET status = 'cancelled', note = ?, resolved_at = ?, "
            f"updated_at = ?, {CLEAR_LEASE} WHERE id = ? AND {OPEN} RETURNING *",
            (reason, self._to_db(now), self._to_db(now), ticket_id),
        )
        if not rows:
            raise self._refuse(ticket_id, "cancelled", None, now)
        ticket = self._ticket(rows[0], now)
        review_span(self._tracer, ticket, now)
        return ticket

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
    ) -> list[Ticket]:
        """Tickets matching every filter given; `status` uses the effective state."""
        where = coerce_filter(
            status=coerce_statuses(status),
            min_priority=min_priority,
            max_priority=max_priority,
            due_before=due_before,
            text=text,
            claimed_by=claimed_by,
            reviewer=reviewer,
            created_since=created_since,
            resolved_since=resolved_since,
            order=order,
            limit=limit,
            offset=offset,
        )
        now = self._now()
        clauses, params = self._filter_sql(where, now)
        sql = f"SELECT * FROM {self.table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        ordering = self.queue_order if where.order == "queue" else ORDERS[where.order]
        sql += f" ORDER BY {ordering} LIMIT ? OFFSET ?"
        rows = self._execute(sql, (*params, where.limit, where.offset))
        return [self._ticket(row, now) for row in rows]

    def _filter_sql(self, where: TicketFilter, now: datetime) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if where.status:
            options = []
            for s in where.status:
                if s == "pending":
                    options.append(EFFECTIVELY_PENDING)
                    params.append(self._to_db(now))
                elif s == "claimed":
                    options.append(EFFECTIVELY_CLAIMED)
                    params.append(self._to_db(now))
                else:
                    options.append("status = ?")
                    params.append(s)
            clauses.append("(" + " OR ".join(options) + ")")
        simple: list[tuple[str, Any]] = [
            ("priority >= ?", where.min_priority),
            ("priority <= ?", where.max_priority),
            ("deadline < ?", self._opt(where.due_before)),
            ("claimed_by = ?", where.claimed_by),
            ("reviewer = ?", where.reviewer),
            ("created_at >= ?", self._opt(where.created_since)),
            ("resolved_at >= ?", self._opt(where.resolved_since)),
        ]
        for clause, value in simple:
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if where.text:
            check_text("text", where.text, self.limits.question)
            escaped = where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(
                f"(question {self.like} ? ESCAPE '\\' OR answer {self.like} ? ESCAPE '\\')"
            )
            params += [f"%{escaped}%"] * 2
        return clauses, params

    def pending(self, limit: int = 100) -> list[Ticket]:
        """Tickets waiting for a reviewer (expired leases included), in queue order."""
        return self.tickets(status="pending", limit=limit)

    def stats(self) -> QueueStats:
        """Counts by state, overdue tickets, the oldest pending ticket's age, time to resolve."""
        now = self._now()
        stamp = self._to_db(now)
        groups = self._execute(
            "SELECT status, CASE WHEN status = 'claimed' AND lease_expires_at <= ? "
            "THEN 1 ELSE 0 END AS expired, COUNT(*) AS n, MIN(created_at) AS oldest, "
            "SUM(CASE WHEN deadline < ? THEN 1 ELSE 0 END) AS overdue "
            f"FROM {self.table} GROUP BY status, expired",
            (stamp, stamp),
        )
        counts = {"pending": 0, "claimed": 0, "resolved": 0, "cancelled": 0}
        expired = overdue = 0
        oldest: datetime | None = None
        for group in groups:
            n, status = int(group["n"]), group["status"]
            effective = "pending" if group["expired"] else status
            counts[effective] += n
            if group["expired"]:
                expired += n
            if effective in ("pending", "claimed"):
                overdue += int(group["overdue"] or 0)
            if effective == "pending":
                first = self._from_db(group["oldest"])
                oldest = first if oldest is None else min(oldest, first)
        resolved = self._execute(
            f"SELECT resolution, COUNT(*) AS n, "
            f"AVG({self._seconds_between('resolved_at', 'created_at')}) AS mean_s "
            f"FROM {self.table} WHERE status = 'resolved' GROUP BY resolution"
        )
        resolutions = {row["resolution"]: int(row["n"]) for row in resolved}
        total_resolved = sum(resolutions.values())
        mean = (
            sum(float(row["mean_s"]) * int(row["n"]) for row in resolved) / total_resolved
            if total_resolved
            else None
        )
        return QueueStats(
            counts=counts,
            total=sum(counts.values()),
            expired_leases=expired,
            overdue=overdue,
            oldest_pending_age_s=(now - oldest).total_seconds() if oldest is not None else None,
            mean_resolve_s=mean,
            resolutions=resolutions,
        )


__all__ = ["SqlQueue"]

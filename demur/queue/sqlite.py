"""A review queue in one SQLite file: the embedded default."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from demur.errors import QueueError
from demur.queue.base import Ticket, TicketRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL DEFAULT 'pending',
    priority    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    body        TEXT NOT NULL,
    answer      TEXT,
    reviewer    TEXT,
    note        TEXT,
    resolved_at TEXT
);
CREATE INDEX IF NOT EXISTS tickets_pending ON tickets (status, priority DESC, created_at);
"""


class SqliteQueue:
    """Tickets in a SQLite database (WAL mode, one connection per thread).

    Every write is a committed transaction before the call returns, so an enqueue that
    returned survives a crash of the process.
    """

    def __init__(self, path: str | Path = "demur-queue.db") -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            except sqlite3.Error as exc:
                raise QueueError(f"cannot open review queue {self.path}: {exc}") from None
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def enqueue(self, request: TicketRequest) -> Ticket:
        ticket = Ticket(id=uuid.uuid4().hex, created_at=datetime.now(UTC), **request.model_dump())
        db = self._connect()
        db.execute(
            "INSERT INTO tickets (id, priority, created_at, body) VALUES (?, ?, ?, ?)",
            (
                ticket.id,
                ticket.priority,
                ticket.created_at.isoformat(),
                request.model_dump_json(),
            ),
        )
        return ticket

    def _row_to_ticket(self, row: sqlite3.Row) -> Ticket:
        request = TicketRequest.model_validate_json(row["body"])
        return Ticket(
            id=row["id"],
            status=row["status"],
            created_at=datetime.fromisoformat(row["created_at"]),
            answer=row["answer"],
            reviewer=row["reviewer"],
            note=row["note"],
            resolved_at=datetime.fromisoformat(row["resolved_at"]) if row["resolved_at"] else None,
            **request.model_dump(),
        )

    def get(self, ticket_id: str) -> Ticket:
        row = self._connect().execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise QueueError(f"no ticket with id '{ticket_id}' in {self.path}")
        return self._row_to_ticket(row)

    def pending(self, limit: int = 100) -> list[Ticket]:
        rows = self._connect().execute(
            "SELECT * FROM tickets WHERE status = 'pending' "
            "ORDER BY priority DESC, created_at LIMIT ?",
            (limit,),
        )
        return [self._row_to_ticket(row) for row in rows]

    def resolve(
        self, ticket_id: str, answer: str, reviewer: str, note: str | None = None
    ) -> Ticket:
        if not answer.strip():
            raise QueueError("a resolution needs a non-empty answer")
        cursor = self._connect().execute(
            "UPDATE tickets SET status = 'resolved', answer = ?, reviewer = ?, note = ?, "
            "resolved_at = ? WHERE id = ? AND status = 'pending'",
            (answer, reviewer, note, datetime.now(UTC).isoformat(), ticket_id),
        )
        if cursor.rowcount != 1:
            ticket = self.get(ticket_id)  # raises when the id is unknown
            raise QueueError(f"ticket '{ticket_id}' is already {ticket.status}")
        return self.get(ticket_id)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

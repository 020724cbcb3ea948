"""A review queue in one SQLite file: the embedded default.

Writes are committed before a call returns, in WAL mode with `synchronous=FULL`, so a ticket
whose enqueue returned survives the process being killed, and a resolution is there whole or
not at all. Several processes may share the file: claims take the write lock first
(`BEGIN IMMEDIATE`), so two reviewers never claim the same ticket.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry import trace

from demur.queue._sql import Clock, Row, SqlQueue
from demur.queue.base import DEFAULT_LEASE_S, PayloadLimits
from demur.queue.errors import QueueUnavailable

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS tickets (
        id          TEXT PRIMARY KEY,
        status      TEXT NOT NULL DEFAULT 'pending',
        priority    INTEGER NOT NULL DEFAULT 0,
        created_at  TEXT NOT NULL,
        body        TEXT NOT NULL,
        answer      TEXT,
        reviewer    TEXT,
        note        TEXT,
        resolved_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS tickets_pending ON tickets (status, priority DESC, created_at)",
)

# Times are integer microseconds since the epoch, UTC. The CHECKs make a half-applied state
# change impossible to store, whatever the code does.
_SCHEMA_V2 = (
    """CREATE TABLE tickets (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        idempotency_key  TEXT UNIQUE,
        status           TEXT NOT NULL
                         CHECK (status IN ('pending', 'claimed', 'resolved', 'cancelled')),
        priority         INTEGER NOT NULL DEFAULT 0,
        deadline         INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        question         TEXT NOT NULL,
        body             TEXT NOT NULL,
        claimed_by       TEXT,
        claimed_at       INTEGER,
        lease_token      TEXT,
        lease_expires_at INTEGER,
        claims           INTEGER NOT NULL DEFAULT 0,
        resolution       TEXT CHECK (resolution IN ('approve', 'edit', 'reject', 'answer')),
        approved         INTEGER,
        answer           TEXT,
        reviewer         TEXT,
        note             TEXT,
        resolved_at      INTEGER,
        CHECK ((status = 'claimed') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
        CHECK ((status = 'resolved') = (resolution IS NOT NULL AND reviewer IS NOT NULL)),
        CHECK ((status IN ('resolved', 'cancelled')) = (resolved_at IS NOT NULL))
    )""",
    "CREATE INDEX tickets_queue ON tickets (priority DESC, deadline IS NULL, deadline, seq) "
    "WHERE status = 'pending'",
    "CREATE INDEX tickets_leases ON tickets (lease_expires_at) WHERE status = 'claimed'",
    "CREATE INDEX tickets_closed ON tickets (resolved_at) WHERE resolved_at IS NOT NULL",
)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _migrate_1(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        db.execute(statement)


def _migrate_2(db: sqlite3.Connection) -> None:
    """The lease-based schema; tickets of the first schema are carried over."""
    db.execute("ALTER TABLE tickets RENAME TO tickets_v1")
    for statement in _SCHEMA_V2:
        db.execute(statement)
    old = db.execute("SELECT * FROM tickets_v1 ORDER BY created_at").fetchall()
    for row in old:
        created = _micros(datetime.fromisoformat(row["created_at"]))
        resolved = (
            _micros(datetime.fromisoformat(row["resolved_at"])) if row["resolved_at"] else None
        )
        done = row["status"] == "resolved"
        db.execute(
            "INSERT INTO tickets (id, status, priority, created_at, updated_at, question, body, "
            "resolution, answer, reviewer, note, resolved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["id"],
                "resolved" if done else "pending",
                row["priority"],
                created,
                resolved or created,
                json.loads(row["body"]).get("question", ""),
                row["body"],
                "answer" if done else None,
                row["answer"],
                (row["reviewer"] or "unknown") if done else None,
                row["note"],
                resolved if done else None,
            ),
        )
    db.execute("DROP TABLE tickets_v1")


# Ordered; each runs once, in one transaction, and bumps PRAGMA user_version.
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "tickets: the first, simple schema", _migrate_1),
    (2, "tickets with leases, resolutions and idempotency keys", _migrate_2),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SqliteQueue(SqlQueue):
    """Tickets in a SQLite database (WAL mode, one connection per thread and process).

    queue = SqliteQueue(".demur/queue.db")
    ticket = queue.enqueue(TicketRequest(question="Who wrote Emma?"))
    claim = queue.claim("ana")
    queue.resolve(claim.ticket.id, claim.token, Resolution.answer("Jane Austen"))
    """

    def __init__(
        self,
        path: str | Path = "demur-queue.db",
        *,
        lease_s: float = DEFAULT_LEASE_S,
        limits: PayloadLimits | None = None,
        clock: Clock | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            lease_s=lease_s, limits=limits, clock=clock, tracer_provider=tracer_provider
        )
        self.path = Path(path)
        self.timeout_s = timeout_s
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    # SQLite sorts NULL first and cannot index NULLS LAST; `deadline IS NULL` does the same.
    queue_order = "priority DESC, deadline IS NULL, deadline, seq"

    @property
    def where(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: a child process opens its own.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            return db
        try:
            db = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=True
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"cannot open the review queue {self.path}: {exc}") from None
        self._local.db, self._local.pid = db, os.getpid()
        return db

    def _migrate(self) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if (
                    version == 0
                    and db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tickets'"
                    ).fetchone()
                ):
                    version = 1  # written by demur before the schema had a version
                if version > SCHEMA_VERSION:
                    raise QueueUnavailable(
                        f"the review queue {self.path} has schema version {version}, newer than "
                        f"this demur knows ({SCHEMA_VERSION}); upgrade demur to open it"
                    )
                for number, _description, migrate in MIGRATIONS:
                    if number > version:
                        migrate(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"cannot migrate the review queue {self.path}: {exc}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cursor = self._connect().execute(sql, tuple(params))
            return [dict(row) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"review queue {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self, timeout_s: float | None = None) -> Iterator[Callable[..., list[Row]]]:
        db = self._connect()

        def run(sql: str, params: Sequence[Any] = ()) -> list[Row]:
            return [dict(row) for row in db.execute(sql, tuple(params)).fetchall()]

        try:
            if timeout_s is not None:  # for this transaction only: the connection is shared
                db.execute(f"PRAGMA busy_timeout = {_millis(timeout_s)}")
            try:
                db.execute("BEGIN IMMEDIATE")  # the write lock first: no two claims race
                try:
                    yield run
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finally:
                if timeout_s is not None:
                    db.execute(f"PRAGMA busy_timeout = {_millis(self.timeout_s)}")
        except sqlite3.Error as exc:
            waited = "" if timeout_s is None else f" (after waiting {timeout_s:.3g}s for it)"
            raise QueueUnavailable(f"review queue {self.path}: {exc}{waited}") from None

    def _to_db(self, value: datetime) -> int:
        return _micros(value)

    def _from_db(self, value: Any) -> datetime:
        return _EPOCH + int(value) * _MICROSECOND

    def _seconds_between(self, later: str, earlier: str) -> str:
        return f"({later} - {earlier}) / 1e6"

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            if self._local.pid == os.getpid():
                db.close()
            self._local.db = None


__all__ = ["SqliteQueue"]

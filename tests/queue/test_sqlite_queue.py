"""What only the SQLite queue does: its file settings, and upgrading files written before."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from demur import SqliteQueue
from demur.queue import QueueUnavailable, Resolution, TicketRequest
from demur.queue.sqlite import SCHEMA_VERSION


def test_the_file_is_in_wal_mode_with_full_sync(tmp_path):
    queue = SqliteQueue(tmp_path / "q.db")
    queue.enqueue(TicketRequest(question="Q?"))
    db = queue._connect()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_folder_is_created(tmp_path):
    queue = SqliteQueue(tmp_path / "a" / "b" / "q.db")
    assert queue.enqueue(TicketRequest(question="Q?")).id


def test_a_file_from_the_first_schema_is_upgraded_with_its_tickets(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE tickets (id TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'pending',
            priority INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, body TEXT NOT NULL,
            answer TEXT, reviewer TEXT, note TEXT, resolved_at TEXT);
        CREATE INDEX tickets_pending ON tickets (status, priority DESC, created_at);
        """
    )
    body = {
        "question": "Who wrote Emma?",
        "context": [],
        "candidates": [{"model": "weak", "text": "Austen", "confidence": 0.3, "scores": {}}],
        "reason": "low",
        "trace_id": None,
        "priority": 2,
    }
    db.execute(
        "INSERT INTO tickets VALUES ('old1', 'pending', 2, ?, ?, NULL, NULL, NULL, NULL)",
        ("2024-03-01T10:00:00.123456+00:00", json.dumps(body)),
    )
    db.execute(
        "INSERT INTO tickets VALUES ('old2', 'resolved', 0, ?, ?, 'Jane Austen', 'ana', 'ok', ?)",
        (
            "2024-03-01T09:00:00+00:00",
            json.dumps({**body, "priority": 0}),
            "2024-03-01T11:00:00+00:00",
        ),
    )
    db.commit()
    db.close()

    queue = SqliteQueue(path)
    pending = queue.get("old1")
    assert (pending.status, pending.priority, pending.question) == ("pending", 2, "Who wrote Emma?")
    assert pending.created_at == datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    done = queue.get("old2")
    assert (done.status, done.resolution, done.answer, done.reviewer, done.note) == (
        "resolved",
        "answer",
        "Jane Austen",
        "ana",
        "ok",
    )
    assert done.resolved_at == datetime(2024, 3, 1, 11, tzinfo=UTC)
    claim = queue.claim("bo")
    assert claim is not None and claim.ticket.id == "old1"
    queue.resolve("old1", claim.token, Resolution.approve(0))
    assert queue._connect().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_from_a_newer_demur_is_refused(tmp_path):
    path = tmp_path / "new.db"
    SqliteQueue(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(
        QueueUnavailable, match=r"newer than this demur knows \(\d+\); upgrade demur"
    ):
        SqliteQueue(path)


def test_a_path_that_cannot_be_opened_is_a_queue_error(tmp_path):
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(QueueUnavailable, match="a-folder.db"):
        SqliteQueue(folder)


def test_the_schema_refuses_half_applied_states(tmp_path):
    """The table's CHECKs reject, for instance, a resolution without a reviewer."""
    queue = SqliteQueue(tmp_path / "q.db")
    ticket = queue.enqueue(TicketRequest(question="Q?"))
    db = queue._connect()
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE tickets SET status = 'resolved' WHERE id = ?", (ticket.id,))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE tickets SET status = 'claimed' WHERE id = ?", (ticket.id,))
    assert queue.get(ticket.id).status == "pending"

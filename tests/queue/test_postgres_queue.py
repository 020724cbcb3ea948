"""What only the PostgreSQL queue does: migrations, connection errors, the optional extra."""

from __future__ import annotations

import sys
import threading

import pytest

from demur.errors import MissingDependencyError
from demur.queue import QueueUnavailable, TicketRequest
from demur.queue.postgres import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE, PostgresQueue, _redact


def _versions(dsn):
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT version, description FROM {VERSION_TABLE}").fetchall()


def test_migrations_are_recorded_once(postgres_dsn):
    PostgresQueue(postgres_dsn).close()
    PostgresQueue(postgres_dsn).close()
    assert _versions(postgres_dsn) == [(v, d) for v, d, _ in MIGRATIONS]


@pytest.mark.timeout(60)
def test_processes_starting_together_migrate_once(postgres_dsn):
    errors: list[BaseException] = []

    def start():
        try:
            queue = PostgresQueue(postgres_dsn)
            queue.enqueue(TicketRequest(question="Q?"))
            queue.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(_versions(postgres_dsn)) == len(MIGRATIONS)
    assert PostgresQueue(postgres_dsn).stats().total == 6


def test_a_database_from_a_newer_demur_is_refused(postgres_dsn):
    import psycopg

    PostgresQueue(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} (version, description) VALUES (%s, 'future')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(QueueUnavailable, match=r"newer than this demur knows \(\d+\)"):
        PostgresQueue(postgres_dsn)


@pytest.mark.timeout(30)
def test_an_unreachable_server_is_a_clear_error_without_the_password():
    dsn = "postgresql://demur:s3cret@127.0.0.1:1/demur"
    with pytest.raises(QueueUnavailable, match="cannot connect to the review queue") as caught:
        PostgresQueue(dsn, connect_timeout_s=2)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_passwords_are_redacted_from_both_dsn_forms():
    assert _redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert _redact("host=h user=u password=pw dbname=d") == "host=h user=u password=*** dbname=d"


def test_without_psycopg_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'demur\[postgres\]'"):
        PostgresQueue("postgresql://localhost/db")


def test_the_schema_refuses_half_applied_states(postgres_dsn):
    import psycopg

    queue = PostgresQueue(postgres_dsn)
    ticket = queue.enqueue(TicketRequest(question="Q?"))
    with (
        psycopg.connect(postgres_dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute("UPDATE demur_tickets SET status = 'resolved' WHERE id = %s", (ticket.id,))
    assert queue.get(ticket.id).status == "pending"

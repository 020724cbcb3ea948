"""What only the PostgreSQL queue does: migrations, connection errors, the optional extra."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import pytest

from demur.errors import ConfigError, MissingDependencyError
from demur.queue import QueueUnavailable, Resolution, TicketRequest
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


def test_without_psycopg_pool_the_error_names_it_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    with pytest.raises(MissingDependencyError, match=r"'psycopg_pool'.*'demur\[postgres\]'"):
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


# --- the connection pool ---------------------------------------------------------------------


def _tagged(dsn, name):
    """The DSN with an application_name, so the test can find its own server sessions."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, application_name=name)


def _backends(dsn, name):
    """Process ids of the server sessions opened under `name`."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (name,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _until(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_min_size": -1}, r"pool_min_size must be an integer >= 0, got -1"),
        ({"pool_max_size": 0}, r"pool_max_size must be an integer >= 1, got 0"),
        ({"pool_max_size": 2.5}, r"pool_max_size must be an integer >= 1, got 2.5"),
        ({"pool_min_size": True}, r"pool_min_size must be an integer >= 0, got True"),
        (
            {"pool_min_size": 4, "pool_max_size": 2},
            r"pool_max_size \(2\) must be >= pool_min_size \(4\)",
        ),
    ],
)
def test_pool_sizes_are_checked_before_connecting(options, message):
    with pytest.raises(ConfigError, match=message):
        PostgresQueue("postgresql://demur@127.0.0.1:1/demur", **options)


def test_the_pool_opens_on_first_use_and_close_ends_its_sessions(postgres_dsn):
    dsn = _tagged(postgres_dsn, "demur-pool-close")
    queue = PostgresQueue(dsn, pool_min_size=2, pool_max_size=4)
    assert queue._pool is None  # migrating uses a connection of its own, closed afterwards
    _until(lambda: _backends(postgres_dsn, "demur-pool-close") == [])
    ticket = queue.enqueue(TicketRequest(question="Q?"))
    pool = queue._pool
    assert pool is not None and not pool.closed
    _until(lambda: len(_backends(postgres_dsn, "demur-pool-close")) >= 2)  # at least min
    queue.close()
    assert pool.closed and queue._pool is None
    _until(lambda: _backends(postgres_dsn, "demur-pool-close") == [])
    assert queue.get(ticket.id).question == "Q?"  # a closed queue opens a new pool on next use
    queue.close()
    queue.close()  # closing twice is harmless


def test_a_queue_dropped_without_close_stops_its_pool(postgres_dsn):
    queue = PostgresQueue(postgres_dsn)
    queue.stats()
    pool = queue._pool
    assert pool is not None
    del queue
    gc.collect()
    assert pool.closed


@pytest.mark.timeout(120)
def test_threads_sharing_a_pool_never_claim_one_ticket_twice(postgres_dsn):
    queue = PostgresQueue(postgres_dsn, pool_max_size=4)  # fewer connections than threads
    ids = {queue.enqueue(TicketRequest(question=f"q{i}", priority=i % 3)).id for i in range(400)}
    start = threading.Barrier(8, timeout=30)
    claimed: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            while (claim := queue.claim(f"w{worker}")) is not None:
                claimed[worker].append(claim.ticket.id)
                if worker % 2:  # half the threads resolve too, mixing statements
                    queue.resolve(claim.ticket.id, claim.token, Resolution.answer("a"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    every = [ticket_id for mine in claimed for ticket_id in mine]
    assert len(every) == len(set(every)) == len(ids), "a ticket was claimed twice, or missed"
    assert set(every) == ids
    assert sum(1 for mine in claimed if mine) >= 2  # the work was really shared
    stats = queue.stats()
    assert stats.counts["claimed"] + stats.counts["resolved"] == len(ids)
    queue.close()


def test_a_terminated_connection_is_replaced_before_the_next_operation(postgres_dsn):
    import psycopg

    dsn = _tagged(postgres_dsn, "demur-pool-kill")
    queue = PostgresQueue(dsn, pool_min_size=1, pool_max_size=1)
    first = queue.enqueue(TicketRequest(question="before"))
    [backend] = _backends(postgres_dsn, "demur-pool-kill")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
    _until(lambda: backend not in _backends(postgres_dsn, "demur-pool-kill"))
    second = queue.enqueue(TicketRequest(question="after"))  # no QueueUnavailable
    assert [t.id for t in queue.pending()] == [first.id, second.id]
    assert backend not in _backends(postgres_dsn, "demur-pool-kill")
    queue.close()


@pytest.mark.timeout(60)
def test_a_pool_with_no_free_connection_is_queue_unavailable(postgres_dsn):
    queue = PostgresQueue(postgres_dsn, pool_max_size=1, connect_timeout_s=1)
    queue.stats()
    with queue._connection(), pytest.raises(QueueUnavailable, match="pooled connections are busy"):
        queue.stats()  # the only connection is taken
    assert queue.stats().total == 0
    queue.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_pool_and_leaves_the_parents_alone(postgres_dsn):
    dsn = _tagged(postgres_dsn, "demur-pool-fork")
    queue = PostgresQueue(dsn, pool_min_size=1, pool_max_size=1)
    queue.enqueue(TicketRequest(question="parent"))
    [parent_backend] = _backends(postgres_dsn, "demur-pool-fork")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            queue.enqueue(TicketRequest(question="child"))
            queue.close()
            del_queue = queue
            del del_queue
            gc.collect()
            status = 0
        finally:
            os._exit(status)
    _pid, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_backend in _backends(postgres_dsn, "demur-pool-fork")
    assert sorted(t.question for t in queue.pending()) == ["child", "parent"]
    queue.close()

"""Fixtures for the queue tests: every contract test runs against SQLite and PostgreSQL.

PostgreSQL comes from `DEMUR_TEST_POSTGRES_DSN` when set (an existing server: each test gets
its own schema), or else from a throwaway server this session starts (initdb into a temporary
folder, a free port on 127.0.0.1). Where neither is possible the PostgreSQL half of the suite
is skipped, and the reason is printed at the end of the run; with `DEMUR_REQUIRE_POSTGRES=1`
(as in CI) it fails instead.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from demur.queue.sqlite import SqliteQueue
from tests.queue.pgserver import DSN_ENV, HOW_TO_ENABLE, PgUnavailable, throwaway_postgres

REQUIRE_ENV = "DEMUR_REQUIRE_POSTGRES"
DEFAULT_TIMEOUT_S = 120


@dataclass
class _Postgres:
    dsn: str | None = None
    source: str = ""
    reason: str | None = None


_STATE = _Postgres()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "timeout(seconds): fail a queue test that runs longer (default 120 s)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STATE.dsn is not None:
        terminalreporter.write_line(f"demur queue: PostgreSQL tests ran against {_STATE.source}")
    elif _STATE.reason is not None:
        terminalreporter.write_line(
            f"demur queue: PostgreSQL tests were SKIPPED: {_STATE.reason}. To run them, "
            f"{HOW_TO_ENABLE}.",
            yellow=True,
            bold=True,
        )


@pytest.fixture(autouse=True)
def _hard_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that hangs (a stuck worker, a lock never released) fails instead of blocking."""
    marker = request.node.get_closest_marker("timeout")
    seconds = int(marker.args[0]) if marker else DEFAULT_TIMEOUT_S

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"{request.node.nodeid} ran longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """A DSN for a PostgreSQL server, or None (with the reason kept for the summary)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _STATE.reason = "psycopg is not installed (pip install 'demur[postgres]')"
        yield None
        return
    given = os.environ.get(DSN_ENV)
    if given:
        _STATE.dsn, _STATE.source = given, f"{DSN_ENV}"
        yield given
        return
    try:
        with throwaway_postgres() as dsn:
            _STATE.dsn, _STATE.source = dsn, f"a throwaway server started for this run ({dsn})"
            yield dsn
    except PgUnavailable as exc:
        _STATE.reason = str(exc)
        yield None


@pytest.fixture
def postgres_dsn(postgres_server: str | None) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test."""
    if postgres_server is None:
        message = f"no PostgreSQL server: {_STATE.reason}. To run these tests, {HOW_TO_ENABLE}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message)
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(postgres_server, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@dataclass
class Store:
    """Where one test's tickets live; `open()` gives a new queue object on it."""

    kind: str
    location: str
    opened: list[Any] = field(default_factory=list)

    def open(self, **options: Any) -> Any:
        if self.kind == "sqlite":
            queue: Any = SqliteQueue(self.location, **options)
        else:
            from demur.queue.postgres import PostgresQueue

            queue = PostgresQueue(self.location, **options)
        self.opened.append(queue)
        return queue


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        where = Store("sqlite", str(tmp_path / "queue.db"))
    else:
        where = Store("postgres", request.getfixturevalue("postgres_dsn"))
    yield where
    for queue in where.opened:
        queue.close()


@pytest.fixture
def queue(store: Store) -> Any:
    return store.open()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: Any) -> None:
        self.now = start

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    from datetime import UTC, datetime

    return FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))


QueueOpener = Callable[..., Any]

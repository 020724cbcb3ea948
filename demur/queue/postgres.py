"""A review queue in PostgreSQL, for several routers and reviewers on several machines.

    queue = PostgresQueue("postgresql://demur@db.internal/demur")

Claims use `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent reviewers each get a different
ticket without waiting on one another. The schema is created and upgraded on first use by
ordered migrations, recorded in `demur_schema_version`, under an advisory lock so that
processes starting together do not race. Needs psycopg 3: `pip install 'demur[postgres]'`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from demur.errors import MissingDependencyError
from demur.queue._sql import Clock, Row, SqlQueue
from demur.queue.base import DEFAULT_LEASE_S, PayloadLimits
from demur.queue.errors import QueueUnavailable

if TYPE_CHECKING:
    import psycopg

TABLE = "demur_tickets"
VERSION_TABLE = "demur_schema_version"
_LOCK_KEY = 0x64656D7572  # "demur": the advisory lock held while migrating

# Ordered: (version, description, statements). Never edit a released migration; add one.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "review tickets with leases, resolutions and idempotency keys",
        (
            f"""CREATE TABLE {TABLE} (
                seq              bigint GENERATED ALWAYS AS IDENTITY,
                id               text PRIMARY KEY,
                idempotency_key  text UNIQUE,
                status           text NOT NULL
                                 CHECK (status IN ('pending', 'claimed', 'resolved', 'cancelled')),
                priority         integer NOT NULL DEFAULT 0,
                deadline         timestamptz,
                created_at       timestamptz NOT NULL,
                updated_at       timestamptz NOT NULL,
                question         text NOT NULL,
                body             jsonb NOT NULL,
                claimed_by       text,
                claimed_at       timestamptz,
                lease_token      text,
                lease_expires_at timestamptz,
                claims           integer NOT NULL DEFAULT 0,
                resolution       text CHECK (resolution IN ('approve', 'edit', 'reject', 'answer')),
                approved         integer,
                answer           text,
                reviewer         text,
                note             text,
                resolved_at      timestamptz,
                CHECK ((status = 'claimed') =
                       (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
                CHECK ((status = 'resolved') = (resolution IS NOT NULL AND reviewer IS NOT NULL)),
                CHECK ((status IN ('resolved', 'cancelled')) = (resolved_at IS NOT NULL))
            )""",
            f"CREATE INDEX {TABLE}_pending ON {TABLE} "
            "(priority DESC, deadline ASC NULLS LAST, seq) WHERE status = 'pending'",
            f"CREATE INDEX {TABLE}_leases ON {TABLE} (lease_expires_at) WHERE status = 'claimed'",
            f"CREATE INDEX {TABLE}_closed ON {TABLE} (resolved_at) WHERE resolved_at IS NOT NULL",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres", "PostgresQueue") from None
    return psycopg


class PostgresQueue(SqlQueue):
    """Tickets in a PostgreSQL database (one connection per thread and process).

    `dsn` is a libpq connection string or URL. The tables are created on first use.
    """

    table = TABLE
    like = "ILIKE"
    body_param = "?::jsonb"
    # A ticket another reviewer is claiming right now is passed over, not waited for; a row
    # is locked only once it still matches the WHERE clause.
    lock = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        dsn: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        limits: PayloadLimits | None = None,
        clock: Clock | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            lease_s=lease_s, limits=limits, clock=clock, tracer_provider=tracer_provider
        )
        self._psycopg = _psycopg()
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        self._migrate()

    @property
    def where(self) -> str:
        return f"PostgreSQL {_redact(self.dsn)}"

    def _connect(self) -> psycopg.Connection[Row]:
        conn: psycopg.Connection[Row] | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid() and not conn.closed:
            return conn
        from psycopg.rows import dict_row

        try:
            conn = self._psycopg.connect(
                self.dsn,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, round(self.connect_timeout_s)),
            )
        except self._psycopg.Error as exc:
            raise QueueUnavailable(
                f"cannot connect to the review queue at {self.where}: {str(exc).strip()}; "
                "check that the server is running and the DSN is right"
            ) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _failed(self, exc: Exception) -> QueueUnavailable:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.broken:
            self._local.conn = None  # reconnect on the next call
        return QueueUnavailable(f"review queue at {self.where}: {str(exc).strip()}")

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer PRIMARY KEY, "
                    "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                row = conn.execute(f"SELECT max(version) AS v FROM {VERSION_TABLE}").fetchone()
                version = int(row["v"]) if row and row["v"] is not None else 0
                if version > SCHEMA_VERSION:
                    raise QueueUnavailable(
                        f"the review queue at {self.where} has schema version {version}, newer "
                        f"than this demur knows ({SCHEMA_VERSION}); upgrade demur to use it"
                    )
                for number, description, statements in MIGRATIONS:
                    if number <= version:
                        continue
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {VERSION_TABLE} (version, description) VALUES (%s, %s)",
                        (number, description),
                    )
        except self._psycopg.Error as exc:
            raise QueueUnavailable(
                f"cannot create or upgrade the review queue schema at {self.where}: "
                f"{str(exc).strip()}"
            ) from None

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        conn = self._connect()
        try:
            cursor = conn.execute(self._sql(sql), tuple(params))
            return list(cursor.fetchall()) if cursor.description is not None else []
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None

    @contextmanager
    def _transaction(self, timeout_s: float | None = None) -> Iterator[Callable[..., list[Row]]]:
        conn = self._connect()

        def run(sql: str, params: Sequence[Any] = ()) -> list[Row]:
            cursor = conn.execute(self._sql(sql), tuple(params))
            return list(cursor.fetchall()) if cursor.description is not None else []

        try:
            with conn.transaction():
                if timeout_s is not None:  # SET LOCAL: it ends with the transaction
                    millis = max(1, round(timeout_s * 1000))
                    run("SELECT set_config('statement_timeout', ?, true)", (str(millis),))
                yield run
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None

    def _to_db(self, value: datetime) -> datetime:
        return value

    def _from_db(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def _seconds_between(self, later: str, earlier: str) -> str:
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if self._local.pid == os.getpid():
                conn.close()
            self._local.conn = None


__all__ = ["PostgresQueue"]

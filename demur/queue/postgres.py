"""A review queue in PostgreSQL, for several routers and reviewers on several machines.

    queue = PostgresQueue("postgresql://demur@db.internal/demur")

A claim is one statement (`SELECT ... FOR UPDATE SKIP LOCKED` in a CTE feeding an `UPDATE ...
RETURNING`), so concurrent reviewers each get a different ticket without waiting on one another,
in one round trip. Connections come from a pool shared by the queue's threads, opened on first
use and closed by `close()`. The schema is created and upgraded on first use by ordered
migrations, recorded in `demur_schema_version`, under an advisory lock so that processes
starting together do not race. Needs psycopg 3 and psycopg_pool: `pip install 'demur[postgres]'`.
"""

from __future__ import annotations

import os
import re
import select
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from time import monotonic
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from demur.errors import ConfigError, MissingDependencyError
from demur.queue._sql import Clock, Row, SqlQueue
from demur.queue.base import DEFAULT_LEASE_S, PayloadLimits
from demur.queue.errors import QueueUnavailable

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

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
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        package = "psycopg_pool" if exc.name == "psycopg_pool" else "psycopg"
        raise MissingDependencyError(package, "postgres", "PostgresQueue") from None
    return psycopg


def _pool_size(field: str, value: int, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"PostgresQueue {field} must be an integer >= {least}, got {value!r}")
    return value


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


# Connections made before a fork belong to the parent process: the pool's threads did not
# follow, and closing its connections here would end the parent's sessions. A child keeps
# them referenced, untouched, and opens its own pool.
_LEFT_IN_PARENT: list[Any] = []


def _close_pool(pool: Any, pid: int) -> None:
    """Close a pool made by this process (on `close()`, or when its queue is collected)."""
    if os.getpid() != pid:
        _LEFT_IN_PARENT.append(pool)
    elif threading.current_thread().name.startswith(f"{pool.name}-"):
        # Collected in one of the pool's own threads, which cannot wait for itself to stop.
        threading.Thread(target=pool.close, name="demur-queue-close", daemon=True).start()
    else:
        pool.close()


class PostgresQueue(SqlQueue):
    """Tickets in a PostgreSQL database, over a pool of connections shared by threads.

    `dsn` is a libpq connection string or URL. The tables are created on first use. The pool
    keeps `pool_min_size` connections open and grows to `pool_max_size` while threads are
    waiting for one (a gateway's request threads and the reviewers' app, say); a thread waits
    up to `connect_timeout_s` for a connection.
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
        pool_min_size: int = 1,
        pool_max_size: int = 10,
    ) -> None:
        super().__init__(
            lease_s=lease_s, limits=limits, clock=clock, tracer_provider=tracer_provider
        )
        self.pool_min_size = _pool_size("pool_min_size", pool_min_size, 0)
        self.pool_max_size = _pool_size("pool_max_size", pool_max_size, 1)
        if pool_max_size < pool_min_size:
            raise ConfigError(
                f"PostgresQueue pool_max_size ({pool_max_size}) must be >= pool_min_size "
                f"({pool_min_size})"
            )
        self._psycopg = _psycopg()
        self._tuples_ok = self._psycopg.pq.ExecStatus.TUPLES_OK
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._pool: ConnectionPool[psycopg.Connection[Row]] | None = None
        self._close_pool: weakref.finalize[Any, Any] | None = None
        self._pool_pid = os.getpid()
        self._pool_lock = threading.Lock()
        self._migrate()

    @property
    def where(self) -> str:
        return f"PostgreSQL {_redact(self.dsn)}"

    def _options(self) -> dict[str, Any]:
        from psycopg.rows import dict_row

        return {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(1, round(self.connect_timeout_s)),
        }

    def _connect(self) -> psycopg.Connection[Row]:
        """A connection of its own, outside the pool (migrations, diagnosing a timeout)."""
        try:
            conn: psycopg.Connection[Row] = self._psycopg.connect(self.dsn, **self._options())
        except self._psycopg.Error as exc:
            raise QueueUnavailable(
                f"cannot connect to the review queue at {self.where}: {str(exc).strip()}; "
                "check that the server is running and the DSN is right"
            ) from None
        return conn

    def _forked(self) -> None:
        """In a child process, leave the parent's pool (and its lock) behind."""
        if self._pool_pid != os.getpid():
            if self._pool is not None:
                _LEFT_IN_PARENT.append(self._pool)
            self._pool, self._close_pool = None, None
            self._pool_pid, self._pool_lock = os.getpid(), threading.Lock()

    def _connection_pool(self) -> ConnectionPool[psycopg.Connection[Row]]:
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        self._forked()
        with self._pool_lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(
                    self.dsn,
                    kwargs=self._options(),
                    min_size=self.pool_min_size,
                    max_size=self.pool_max_size,
                    timeout=self.connect_timeout_s,
                    name="demur-queue",
                    open=True,
                )
                # A queue dropped without close() still stops the pool's threads.
                self._close_pool = weakref.finalize(self, _close_pool, self._pool, os.getpid())
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Row]]:
        """A live connection from the pool, returned to it afterwards.

        Connections whose server side has gone (a terminated backend, a restarted server) are
        dropped here, so the pool replaces them and the caller gets a working one.
        """
        pool = self._connection_pool()
        deadline = monotonic() + self.connect_timeout_s
        while True:
            try:
                conn = pool.getconn()
            except self._psycopg.Error as exc:
                raise self._no_connection(exc) from None
            if self._alive(conn):
                break
            conn.close()
            pool.putconn(conn)  # closed: the pool opens a replacement
            if monotonic() > deadline:
                raise self._no_connection(None)
        try:
            yield conn
        finally:
            pool.putconn(conn)

    @staticmethod
    def _alive(conn: psycopg.Connection[Row]) -> bool:
        """Whether an idle pooled connection still has its server, found without a round trip.

        An idle connection has nothing to read unless the server spoke first, which for the
        queue's connections (no LISTEN) means a terminated backend or a server shutting down:
        an error message, then end-of-file, perhaps not yet arrived. Either way it is dropped.
        """
        if conn.closed:
            return False
        try:
            return not _readable(conn.pgconn.socket)
        except conn.OperationalError:  # the socket is gone already
            return False

    def _no_connection(self, exc: Exception | None) -> QueueUnavailable:
        """Why the pool gave no connection in time: the server is down, or the pool is full."""
        try:
            self._connect().close()
        except QueueUnavailable as down:
            return down
        why = f": {str(exc).strip()}" if exc is not None else ""
        return QueueUnavailable(
            f"no connection to the review queue at {self.where} within "
            f"{self.connect_timeout_s:g}s{why}; all {self.pool_max_size} pooled connections "
            "are busy, or the pool is still reconnecting: raise pool_max_size, or try again"
        )

    def _failed(self, exc: Exception) -> QueueUnavailable:
        # A broken connection goes back to the pool, which discards and replaces it.
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
        finally:
            conn.close()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _rows(self, cursor: psycopg.Cursor[Row]) -> list[Row]:
        # The result's status, not `cursor.description`, which builds every column's metadata.
        result = cursor.pgresult
        if result is None or result.status != self._tuples_ok:
            return []
        return cursor.fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._connection() as conn:
            try:
                return self._rows(conn.execute(self._sql(sql), tuple(params)))
            except self._psycopg.Error as exc:
                raise self._failed(exc) from None

    @contextmanager
    def _transaction(self, timeout_s: float | None = None) -> Iterator[Callable[..., list[Row]]]:
        with self._connection() as conn:

            def run(sql: str, params: Sequence[Any] = ()) -> list[Row]:
                return self._rows(conn.execute(self._sql(sql), tuple(params)))

            try:
                with conn.transaction():
                    if timeout_s is not None:  # SET LOCAL: it ends with the transaction
                        millis = max(1, round(timeout_s * 1000))
                        run("SELECT set_config('statement_timeout', ?, true)", (str(millis),))
                    yield run
            except self._psycopg.Error as exc:
                raise self._failed(exc) from None

    def _claim_next(self, assignments: str, params: Sequence[Any], now: datetime) -> Row | None:
        """Claim the first ticket in queue order among pending ones and expired claims.

        One statement, so one round trip and no explicit transaction: the best pending ticket
        and the best expired claim (two indexed lookups, each locking its row and skipping rows
        other claims hold), the better of the two, and the update of that one.
        """
        columns = f"SELECT id, priority, deadline, seq FROM {self.table}"
        tail = f"ORDER BY {self.queue_order} LIMIT 1{self.lock}"
        rows = self._execute(
            f"WITH waiting AS ({columns} WHERE status = 'pending' {tail}), "
            f"expired AS ({columns} WHERE status = 'claimed' AND lease_expires_at <= ? {tail}), "
            "best AS (SELECT id FROM (SELECT * FROM waiting UNION ALL SELECT * FROM expired) AS "
            f"found ORDER BY {self.queue_order} LIMIT 1) "
            f"UPDATE {self.table} SET {assignments} FROM best WHERE {self.table}.id = best.id "
            f"RETURNING {self.table}.*",
            (self._to_db(now), *params),
        )
        return rows[0] if rows else None

    def _to_db(self, value: datetime) -> datetime:
        return value

    def _from_db(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def _seconds_between(self, later: str, earlier: str) -> str:
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"

    def close(self) -> None:
        """Close the pool and its connections; the queue opens a new pool on next use."""
        self._forked()
        with self._pool_lock:
            closing, self._pool, self._close_pool = self._close_pool, None, None
        if closing is not None:
            closing()


__all__ = ["PostgresQueue"]

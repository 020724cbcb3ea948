"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temporary folder,
start it on a free port on 127.0.0.1 (with its unix socket in the same folder), stop and
delete it afterwards.

    with throwaway_postgres() as dsn:
        queue = PostgresQueue(dsn)

PostgreSQL refuses to run as root; as root the server runs as the `postgres` user (or
`nobody`). When the binaries are missing or the server will not start, `PgUnavailable` says
why and how to fix it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DSN_ENV = "DEMUR_TEST_POSTGRES_DSN"
HOW_TO_ENABLE = (
    "install the PostgreSQL server (e.g. `apt-get install postgresql`, or put initdb and "
    f"pg_ctl on PATH), or set {DSN_ENV}=postgresql://USER@HOST:PORT/DB to use a running server"
)


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def find_binaries() -> tuple[str, str]:
    """Paths of initdb and pg_ctl: on PATH, or the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        initdb, pg_ctl = f"{folder}/initdb", f"{folder}/pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise PgUnavailable(
        "the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH nor in "
        "/usr/lib/postgresql/*/bin"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that drops root, and the user it runs as."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        runuser = shutil.which("runuser") or shutil.which("setpriv")
        if runuser is None:
            break
        if runuser.endswith("setpriv"):
            entry = pwd.getpwnam(user)
            return [
                runuser,
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--init-groups",
            ], user
        return [runuser, "-u", user, "--"], user
    raise PgUnavailable(
        "running as root, and PostgreSQL refuses root: no 'postgres' or 'nobody' user to run "
        "it as, or no runuser/setpriv"
    )


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def _start(prefix: list[str], root: Path, fsync: bool, timeout_s: float) -> int:
    """initdb and start a server in `root`; its port."""
    initdb, pg_ctl = find_binaries()
    data, log = root / "data", root / "server.log"
    done = _run(
        [*prefix, initdb, "-D", str(data), "-U", "demur", "-A", "trust", "-E", "UTF8",
         "--locale=C", "--no-sync"],
        timeout_s,
    )  # fmt: skip
    if done.returncode != 0:
        raise PgUnavailable(f"initdb failed: {(done.stderr or done.stdout).strip()[-800:]}")
    settings = f"-c fsync={'on' if fsync else 'off'} -c max_connections=200"
    if not fsync:
        settings += " -c synchronous_commit=off -c full_page_writes=off"
    for _attempt in range(3):  # another process may take the free port first
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 {settings}"
        done = _run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t",
             str(int(timeout_s)), "-o", options, "start"],
            timeout_s + 10,
        )  # fmt: skip
        if done.returncode == 0:
            return port
    tail = log.read_text(errors="replace")[-800:] if log.exists() else done.stderr
    raise PgUnavailable(f"the server did not start: {tail.strip()}")


@contextmanager
def throwaway_postgres(*, fsync: bool = False, timeout_s: float = 60.0) -> Iterator[str]:
    """Start a private server and yield its DSN; stop it and delete its files at the end.

    `fsync=False` (for tests) trades the server's crash safety for speed; the benchmark
    keeps it on.
    """
    _initdb, pg_ctl = find_binaries()
    prefix, user = _runner()
    # The server's user must reach the folder: as root, skip a TMPDIR under /root.
    parent = "/tmp" if user is not None and os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="demur-pg-", dir=parent))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        try:
            port = _start(prefix, root, fsync, timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise PgUnavailable(
                f"{exc.cmd[len(prefix)]} did not finish in {exc.timeout:g}s"
            ) from None
        try:
            yield f"postgresql://demur@127.0.0.1:{port}/postgres"
        finally:
            _run([*prefix, pg_ctl, "-D", str(root / "data"), "-m", "immediate", "-w", "stop"], 60)
    finally:
        shutil.rmtree(root, ignore_errors=True)

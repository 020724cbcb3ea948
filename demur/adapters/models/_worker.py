"""Run a local model in a child process, so a native crash cannot take its host down.

The parent keeps a `ModelWorker`; the child runs `python -m demur.adapters.models._worker`,
builds the in-process model from a picklable spec, and answers one request at a time over a
socket pair. A child that dies (SIGSEGV inside llama.cpp, an out-of-memory kill) or hangs turns
into a `ModelCrashedError` or `ModelTimeoutError` for that call; the next call starts a new
child. A child whose parent goes away reads end-of-file and exits, so none is left behind.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from demur.errors import (
    ContextOverflowError,
    DemurError,
    ModelCrashedError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    TransientModelError,
)
from demur.types import Generation, GenerationRequest

logger = logging.getLogger("demur.worker")

# Errors the child may report, rebuilt under the same class in the parent.
_ERRORS: Mapping[str, type[ModelError]] = {
    cls.__name__: cls
    for cls in (
        ContextOverflowError,
        ModelNotFoundError,
        ModelTimeoutError,
        PermanentModelError,
        TransientModelError,
    )
}


class WorkerModel(Protocol):
    """What the child needs from the model it hosts."""

    def generate_blocking(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        """Generate in the calling thread; raise `Cancelled` soon after `cancel` is set."""
        ...

    def load_blocking(self) -> None: ...

    def close_blocking(self) -> None: ...


class Cancelled(Exception):
    """The caller gave up on the call; the model stopped between tokens."""


@dataclass(frozen=True)
class WorkerSpec:
    """How the child builds its model: `module.factory(**kwargs)`."""

    module: str
    factory: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "an unknown cause"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class ModelWorker:
    """A child process hosting one model; calls are serialised, one at a time.

    `grace_s` is how long a cancelled or overdue call may take to stop before the child is
    killed. The child starts on the first call and again after any crash, and loads the weights
    before its first request under `load_timeout_s`, not the request's timeout: a caller that
    gives up during the load leaves it running, so a slow load is not restarted forever.
    """

    def __init__(
        self, name: str, spec: WorkerSpec, *, grace_s: float = 5.0, load_timeout_s: float = 600.0
    ) -> None:
        self.name = name
        self.spec = spec
        self.grace_s = grace_s
        self.load_timeout_s = load_timeout_s
        self._ready = False  # the running child has loaded its weights
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # --- calls --------------------------------------------------------------------------------

    def generate(
        self, request: GenerationRequest, cancel: threading.Event, timeout_s: float
    ) -> Generation:
        """Run one request in the child; blocks the calling thread until it answers."""
        self.load(cancel)
        result = self._call("generate", request, cancel, timeout_s)
        assert isinstance(result, Generation)
        return result

    def load(self, cancel: threading.Event | None = None) -> None:
        """Start the child and have it load the weights, unless a running child already has."""
        if not self._ready:
            self._call("load", None, cancel or threading.Event(), self.load_timeout_s)

    def close(self) -> None:
        """Stop the child, politely first; a later call starts a new one."""
        with self._lock:
            self._stop(polite=True)

    def _call(
        self, kind: str, payload: object, cancel: threading.Event, timeout_s: float
    ) -> object:
        with self._lock:
            if cancel.is_set():
                raise Cancelled
            if kind == "load" and self._ready:
                return None  # another caller's load finished while this one waited
            conn = self._ensure_started()
            call_id = next(self._ids)
            try:
                conn.send((kind, call_id, payload))
            except OSError:
                raise self._crashed("before the request reached it") from None
            result = self._await(call_id, cancel, timeout_s, stoppable=kind != "load")
            if kind == "load":
                self._ready = True
            return result

    def _await(
        self, call_id: int, cancel: threading.Event, timeout_s: float, *, stoppable: bool
    ) -> object:
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        overdue_at = time.monotonic() + timeout_s + self.grace_s
        cancelled_at: float | None = None
        while True:
            if conn.poll(0.05):
                try:
                    status, answered_id, body = conn.recv()
                except (EOFError, OSError):
                    raise self._crashed("while generating") from None
                if answered_id != call_id:
                    continue  # the late answer to a call that was given up on
                if status == "ok":
                    return body
                if status == "cancelled":
                    raise Cancelled
                raise _rebuild(body, self.name)
            now = time.monotonic()
            if cancel.is_set() and not stoppable:
                raise Cancelled  # a load cannot stop midway; let it finish for the next call
            if cancel.is_set() and cancelled_at is None:
                cancelled_at = now
                try:
                    conn.send(("cancel", call_id, None))
                except OSError:
                    raise self._crashed("while generating") from None
            if cancelled_at is not None and now - cancelled_at > self.grace_s:
                self._stop(polite=False)
                raise Cancelled
            if now > overdue_at:
                self._stop(polite=False)
                raise ModelTimeoutError(
                    f"the worker process of '{self.name}' gave no answer in {timeout_s:g} s "
                    f"(+{self.grace_s:g} s grace) and was killed; the next call starts a new one",
                    model=self.name,
                )

    def _crashed(self, when: str) -> ModelCrashedError:
        process = self._process
        code = process.wait(timeout=5) if process is not None else None
        self._stop(polite=False)
        return ModelCrashedError(
            f"the worker process of '{self.name}' died with {_signal_name(code)} {when}; "
            "the step failed and the next call starts a new worker. If this repeats on a CPU "
            "with AMX, keep extra_buffers unset or set it to false.",
            model=self.name,
        )

    # --- the child's lifetime -----------------------------------------------------------------

    def _ensure_started(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.poll() is None:
            return self._conn
        self._stop(polite=False)
        parent_end, child_end = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "demur.adapters.models._worker", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_child_env(),
                close_fds=True,
            )
        except OSError as exc:
            parent_end.close()
            raise PermanentModelError(
                f"could not start a worker process for '{self.name}': {exc}. Pass "
                "isolation='thread' to run the model in this process instead.",
                model=self.name,
            ) from None
        finally:
            child_end.close()
        conn = Connection(parent_end.detach())
        conn.send(self.spec)
        self._process, self._conn = process, conn
        self._ready = False
        self._finalizer = weakref.finalize(self, _kill, process, conn)
        return conn

    def _stop(self, *, polite: bool) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is None or conn is None:
            return
        if polite and process.poll() is None:
            try:
                conn.send(("close", 0, None))
                process.wait(timeout=self.grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _kill(process, conn)


def _kill(process: subprocess.Popen[bytes], conn: Connection) -> None:
    """Kill the child if it still runs, reap it, and close our end of the socket."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel always reaps SIGKILL
        logger.warning("worker process %s did not exit after SIGKILL", process.pid)
    conn.close()


def _child_env() -> dict[str, str]:
    """The parent's environment, with demur importable even from a source checkout."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _rebuild(body: tuple[str, str, dict[str, Any]], model: str) -> ModelError:
    name, message, extra = body
    cls = _ERRORS.get(name, PermanentModelError)
    error = cls(message, model=model)
    for key, value in extra.items():
        setattr(error, key, value)
    return error


# --- the child --------------------------------------------------------------------------------


def _describe(exc: BaseException) -> tuple[str, str, dict[str, Any]]:
    if isinstance(exc, ModelError):
        extra = {k: v for k, v in vars(exc).items() if k not in ("model", "retries")}
        return type(exc).__name__, str(exc), extra
    if isinstance(exc, DemurError):
        return PermanentModelError.__name__, str(exc), {}
    return PermanentModelError.__name__, f"{type(exc).__name__}: {exc}", {}


def serve(conn: Connection) -> None:
    """The child's loop: build the model, then answer requests until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    spec: WorkerSpec = conn.recv()
    model: WorkerModel = getattr(importlib.import_module(spec.module), spec.factory)(**spec.kwargs)
    send_lock = threading.Lock()
    running: dict[int, threading.Event] = {}

    def reply(message: tuple[str, int, object]) -> None:
        with send_lock:
            try:
                conn.send(message)
            except OSError:
                os._exit(0)  # the parent is gone

    def run(kind: str, call_id: int, payload: Any, cancel: threading.Event) -> None:
        try:
            if kind == "load":
                model.load_blocking()
                reply(("ok", call_id, None))
            else:
                reply(("ok", call_id, model.generate_blocking(payload, cancel)))
        except Cancelled:
            reply(("cancelled", call_id, None))
        except Exception as exc:
            reply(("error", call_id, _describe(exc)))
        finally:
            running.pop(call_id, None)

    while True:
        try:
            kind, call_id, payload = conn.recv()
        except (EOFError, OSError):
            break
        if kind == "close":
            break
        if kind == "cancel":
            event = running.get(call_id)
            if event is not None:
                event.set()
            continue
        cancel = running[call_id] = threading.Event()
        threading.Thread(target=run, args=(kind, call_id, payload, cancel), daemon=True).start()
    for event in list(running.values()):
        event.set()
    model.close_blocking()


def main() -> None:
    serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()

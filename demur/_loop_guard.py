"""Components on the event loop: every step timed, every cancellation carried out.

A model's or an estimator's coroutine runs on the route's event loop, where two faults defeat
every timeout: synchronous work inside it (the loop runs nothing else meanwhile, other routes
included) and a swallowed `asyncio.CancelledError` (the timeout fires; the coroutine goes on).

`Guarded` wraps such a coroutine as it is awaited, with no task of its own, so a well-behaved
component costs almost nothing more. It times each step, so the caller can report one that
blocked the loop; once the coroutine is cancelled, it has `CANCEL_GRACE_S` to stop, after which
it is left to finish in a background task and the caller sees `CancelledError`: the timeout
holds. Only a step that never yields cannot be cut short: the loop is the one thread running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Generator
from time import perf_counter
from typing import Any, TypeVar

T = TypeVar("T")

BLOCKING_S = 0.05  # a step that runs longer than this has held up the whole loop
CANCEL_GRACE_S = 0.1  # how long a cancelled component may take to stop (its cleanup awaits)

logger = logging.getLogger("demur")

_seen: dict[tuple[str, str], int] = {}
# The background tasks of components left running after they ignored a cancellation: the loop
# keeps only weak references to tasks.
_detached: set[asyncio.Task[None]] = set()


def warn_once(what: str, problem: str, message: str, *, after: int = 1) -> None:
    """Log `message` as a warning the `after`-th time `what` shows `problem`, else at debug level.

    A step can also seem to block when the machine paused the whole process (a busy host, a
    long garbage collection): the blocking reports wait for a second time (`after=2`).
    """
    seen = _seen[what, problem] = _seen.get((what, problem), 0) + 1
    logger.log(logging.WARNING if seen == after else logging.DEBUG, message)


def loop_running() -> bool:
    """True when called on a thread that is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Guarded(Generator[Any, Any, T]):
    """`await Guarded(coroutine, what)`: the coroutine, each step timed, its cancellation enforced.

    `expires` is the loop time at which the caller's timeout cancels it: cancellations before
    then are the component's own business. `blocked_s` is its longest step so far, in seconds
    (read it once the await is over); `what` ("model 'weak'") names the component in the log.
    """

    __slots__ = (
        "_expires",
        "_grace_ends",
        "_inner",
        "_longest",
        "_started",
        "_timer",
        "_waiting",
        "what",
    )

    def __init__(
        self, inner: Coroutine[Any, Any, T], what: str, *, expires: float | None = None
    ) -> None:
        self._inner = inner
        self.what = what
        self._expires = expires  # the loop time of the timeout the caller awaits it under
        self._longest = 0.0
        self._started = 0.0  # when the step under way began; 0 between steps
        self._grace_ends = 0.0  # set once cancelled: when its time to stop runs out
        self._waiting: Any = None  # while stopping: what the coroutine awaits
        self._timer: asyncio.TimerHandle | None = None

    def __await__(self) -> Generator[Any, Any, T]:
        return self

    @property
    def blocked_s(self) -> float:
        # The last step ends in an exception (StopIteration, at the least), which passes
        # straight through `send`: it is timed here, right after, rather than caught there.
        started = self._started
        return self._longest if not started else max(self._longest, perf_counter() - started)

    def send(self, value: Any = None) -> Any:
        if self._grace_ends:
            return self._resume()
        self._started = started = perf_counter()
        yielded = self._inner.send(value)
        self._ended(started)
        return yielded

    __next__ = send  # how `await` steps a wrapper, with no frame more than a coroutine needs

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = _exception(typ, val)
        if self._grace_ends:  # cancelled again while stopping: wait for it no longer
            self._detach()
            raise exc
        self._started = started = perf_counter()
        yielded = self._inner.throw(exc)
        self._ended(started)
        if isinstance(exc, asyncio.CancelledError) and self._timed_out():
            # It awaits again instead of ending: a cleanup, or a swallowed cancellation.
            self._grace_ends = time.monotonic() + CANCEL_GRACE_S
            return self._stopping(yielded)
        return yielded

    def _timed_out(self) -> bool:
        """Whether a cancellation comes from the caller's timeout (or, without one, from
        anywhere). Before it, a cancel scope inside the component (anyio's, in httpx's
        connection attempts) may cancel and catch its own work: that is no reason to stop."""
        if self._expires is None:
            return True
        return asyncio.get_running_loop().time() >= self._expires

    def close(self) -> None:
        self._inner.close()

    def _ended(self, started: float) -> None:
        spent = perf_counter() - started
        if spent > self._longest:
            self._longest = spent
        self._started = 0.0

    def _stopping(self, yielded: Any) -> Any:
        """Pass on what the cancelled coroutine awaits, but wake up when its grace ends."""
        self._waiting = yielded
        left = self._grace_ends - time.monotonic()
        if left <= 0:
            self._detach()
            raise asyncio.CancelledError
        if not asyncio.isfuture(yielded):
            return yielded  # a bare yield: the loop comes straight back
        loop = yielded.get_loop()
        wake = loop.create_future()
        yielded.add_done_callback(lambda _: _set(wake))
        self._timer = loop.call_later(left, _set, wake)
        return next(wake.__await__())  # the caller's task now waits on `wake`

    def _resume(self) -> Any:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = self._waiting
        if asyncio.isfuture(waiting) and not waiting.done():  # the grace ran out first
            self._detach()
            raise asyncio.CancelledError
        self._waiting = None
        self._started = started = perf_counter()
        yielded = self._inner.send(None)
        self._ended(started)
        return self._stopping(yielded)

    def _detach(self) -> None:
        """Leave the coroutine to finish in a background task, and say so."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(
            _finish(self._inner, self._waiting, self.what), name=f"demur: {self.what}, detached"
        )
        _detached.add(task)
        task.add_done_callback(_detached.discard)
        warn_once(
            self.what,
            "cancellation",
            f"{self.what} did not stop within {CANCEL_GRACE_S:g}s of being cancelled (at a "
            "timeout or the route's deadline): the route went on without it and left it to "
            "finish in the background. Components must let asyncio.CancelledError propagate.",
        )


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _exception(typ: Any, val: Any) -> BaseException:
    """The exception of a `throw(typ, val)` call, in either of its forms."""
    if isinstance(typ, BaseException):
        return typ
    if isinstance(val, BaseException):
        return val
    return typ() if val is None else typ(val)  # type: ignore[no-any-return]


async def _finish(inner: Coroutine[Any, Any, Any], waiting: Any, what: str) -> None:
    """Drive `inner`, left awaiting `waiting`, to its end; log how it ended."""
    started = time.monotonic()
    while True:
        try:
            if asyncio.isfuture(waiting):
                await asyncio.wait((waiting,))
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                inner.close()  # this task was cancelled: its loop is closing
            raise
        try:
            waiting = inner.send(None)
        except StopIteration:
            ending = "returned; its result was discarded"
        except asyncio.CancelledError:
            ending = "stopped"
        except Exception as exc:
            ending = f"raised {type(exc).__name__}: {exc}"
        else:
            continue
        logger.debug("%s, left running, %s %.2fs later", what, ending, time.monotonic() - started)
        return

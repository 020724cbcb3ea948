"""One long-lived event loop per thread, for the router's synchronous facade.

`Router.route` and the framework integrations run coroutines to completion from synchronous
code. Setting a loop up per call would cost more than a whole route, and so would
`asyncio.Runner.run`, which installs a SIGINT handler on every call from the main thread: the
thread's loop is created once and driven directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, created on first use and kept for the thread's life."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _local.runner = runner
    return runner.get_loop()


def run_on_thread_loop(
    coroutine: Coroutine[Any, Any, T], context: contextvars.Context | None = None
) -> T:
    """Run `coroutine` to completion on this thread's loop, in `context` (default: a copy of
    the caller's, so the active OpenTelemetry span reaches every span of the route).

    Interrupted (Ctrl-C), the task is cancelled and run to its end before the interrupt
    propagates, so nothing is left pending on the loop.
    """
    loop = thread_loop()
    task = loop.create_task(coroutine, context=context or contextvars.copy_context())
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        raise

"""Running a route from synchronous LangChain code, keeping the caller's context.

The router's event loop for this thread runs the coroutine in a copy of the caller's context,
so the active OpenTelemetry span and LangChain's run config (callbacks, tags) reach every
span and model call of the route. Called from a thread whose event loop is running (a
notebook, an async framework calling sync code), the route runs in a worker thread instead,
again in a copy of the caller's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from demur.router.thread_loop import run_on_thread_loop

T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(make)
    context = contextvars.copy_context()
    return _offload().submit(context.run, _run_here, make).result()


def _run_here(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return run_on_thread_loop(make())


def _offload() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="demur-sync")
        return _pool

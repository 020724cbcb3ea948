"""The per-thread loop behind the synchronous facade: reused, context kept, nothing left behind."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from demur.router.thread_loop import run_on_thread_loop, thread_loop

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def read_request_id() -> str:
    await asyncio.sleep(0)
    return REQUEST_ID.get()


def test_the_callers_context_reaches_the_coroutine():
    token = REQUEST_ID.set("r-42")
    try:
        assert run_on_thread_loop(read_request_id()) == "r-42"
    finally:
        REQUEST_ID.reset(token)


def test_one_loop_per_thread_is_reused():
    first = thread_loop()
    run_on_thread_loop(read_request_id())
    assert thread_loop() is first
    other: list[asyncio.AbstractEventLoop] = []
    worker = threading.Thread(target=lambda: other.append(thread_loop()))
    worker.start()
    worker.join()
    assert other[0] is not first


def test_an_interrupted_route_is_cancelled_not_left_pending():
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = thread_loop()
    # A callback that raises KeyboardInterrupt is how Ctrl-C reaches a running loop.
    loop.call_later(0.01, lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_on_thread_loop(slow())
    assert cancelled.is_set()
    assert not [t for t in asyncio.all_tasks(loop) if not t.done()]

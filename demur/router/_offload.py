"""An event loop on a worker thread, for a model whose synchronous work blocked the route's loop.

Moved there, the model's blocking steps hold up only that thread: the route's timeout still
fires on time, and other routes on the route's loop go on meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running on a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` on this thread's loop; cancelling the caller cancels it there.

        The caller's context (its active span) goes with the coroutine.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop the loop; a thread still blocked in a model call is left to end on its own."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self.loop.close()

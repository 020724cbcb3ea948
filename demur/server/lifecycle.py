"""When the gateway takes questions: after its models are warm, and until it drains.

Start-up: `WarmUp` loads every model that can load ahead of time (an `aload()` method, as
local models have) while `/readyz` answers 503 "starting"; it turns 200 once all are loaded.
A model that fails to load leaves `/readyz` at 503 "failed" (the log says why).

Shutdown: `Drain` starts on SIGTERM (or `BackgroundServer.stop()`). `/readyz` answers 503
"draining", new questions get a 503 `shutting_down`, and routes in flight get the drain window
(`ServerSettings.shutdown_timeout_s`) to finish; those still running then are cut off with the
same clean 503, and the server closes once none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Literal

from demur.protocols import Model
from demur.server.errors import ApiError

logger = logging.getLogger("demur.server")

WarmState = Literal["starting", "ready", "failed"]
_CUT_OFF = "the gateway's drain window ended"


class WarmUp:
    """Loads the models before the gateway calls itself ready."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._loaders: dict[str, Callable[[], Awaitable[object]]] = {
            name: load
            for name, model in models.items()
            if callable(load := getattr(model, "aload", None))
        }
        self.state: WarmState = "ready" if not self._loaders else "starting"
        self.failed: str | None = None  # the model that could not load
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Load in the background: the server answers /healthz and /readyz meanwhile."""
        if self._loaders and self._task is None:
            self._task = asyncio.create_task(self._load(), name="demur-warm-up")

    async def _load(self) -> None:
        started = time.perf_counter()
        for name, load in self._loaders.items():
            logger.info("loading model", extra={"demur": {"model": name}})
            try:
                await load()
            except Exception as exc:
                self.state, self.failed = "failed", name
                logger.error(
                    "model failed to load; /readyz stays 503",
                    exc_info=exc,
                    extra={"demur": {"model": name, "error_type": type(exc).__name__}},
                )
                return
        self.state = "ready"
        seconds = round(time.perf_counter() - started, 3)
        logger.info("models loaded", extra={"demur": {"models": list(self._loaders), "s": seconds}})

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Drain:
    """The routes in flight, and the window they get to finish once shutdown begins."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.started: float | None = None
        self._routes: set[asyncio.Task[object]] = set()
        self._cut = False

    @property
    def active(self) -> bool:
        return self.started is not None

    @property
    def in_flight(self) -> int:
        return len(self._routes)

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()
            logger.info(
                "draining",
                extra={"demur": {"in_flight": self.in_flight, "window_s": self.window_s}},
            )

    def refuse_new(self) -> None:
        """A 503 for a question asked once draining has begun."""
        if self.active:
            raise shutting_down("the gateway is shutting down and takes no new questions")

    @contextlib.contextmanager
    def route(self) -> Iterator[None]:
        """Count the current task as a route in flight; a 503 if the drain cuts it off."""
        task = asyncio.current_task()
        assert task is not None
        self._routes.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._cut:
                raise
            task.uncancel()
            raise shutting_down(
                f"the gateway shut down before the answer was ready ({self.window_s:g}s "
                "drain window)"
            ) from None
        finally:
            self._routes.discard(task)

    def finished(self) -> bool:
        """True once no route is in flight; past the window, cuts off those left first."""
        if not self._routes:
            return True
        over = self.started is not None and time.monotonic() - self.started >= self.window_s
        if over and not self._cut:
            self._cut = True
            logger.warning(
                "drain window over; cutting off routes",
                extra={"demur": {"in_flight": self.in_flight}},
            )
            for task in self._routes:
                task.cancel(_CUT_OFF)
        return False


def shutting_down(message: str) -> ApiError:
    return ApiError(
        503,
        f"{message}; retry, another instance will answer",
        type="server_error",
        code="shutting_down",
        headers={"Retry-After": "1", "Connection": "close"},
    )


__all__ = ["Drain", "WarmUp", "shutting_down"]

"""`LoggedRouter`: a router whose every route is appended to a `RouteLog`."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from demur.routelog.log import RouteLog
from demur.types import Query, Verdict

logger = logging.getLogger("demur.routelog")


class Routes(Protocol):
    """What LoggedRouter wraps: anything with `route` and `aroute` (a demur Router)."""

    def route(self, query: Query | str) -> Verdict: ...

    async def aroute(self, query: Query | str) -> Verdict: ...


class LoggedRouter:
    """Routes through `router` and records each verdict in `log`, with no change to the router.

        router = LoggedRouter(load_router("demur.yaml"), RouteLog(".demur/routes.jsonl"))
        verdict = router.route(Query("Who wrote Emma?", id="req-42"))
        router.log.record_outcome("req-42", correct=True, source="spot_check")

    An outcome names the route by its query id, trace id or ticket id. A failure to write the
    log is logged as a warning and the verdict returned all the same, unless `strict` is True.
    Every other attribute (close, aclose, models, ...) is the wrapped router's.
    """

    def __init__(self, router: Routes, log: RouteLog, *, strict: bool = False) -> None:
        self.router = router
        self.log = log
        self.strict = strict

    def route(self, query: Query | str) -> Verdict:
        """Route one query and log it."""
        query = Query.coerce(query)
        verdict = self.router.route(query)
        self._record(query, verdict)
        return verdict

    async def aroute(self, query: Query | str) -> Verdict:
        """Route one query and log it (async)."""
        query = Query.coerce(query)
        verdict = await self.router.aroute(query)
        self._record(query, verdict)
        return verdict

    def _record(self, query: Query, verdict: Verdict) -> None:
        try:
            self.log.record(query, verdict)
        except (OSError, TypeError, ValueError) as exc:
            if self.strict:
                raise
            logger.warning("route log %s: could not record a route: %s", self.log.path, exc)

    def __getattr__(self, name: str) -> Any:
        if name == "router":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.router, name)

    def __enter__(self) -> LoggedRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.router, "close", None)
        if close is not None:
            close()
        self.log.close()

    async def __aenter__(self) -> LoggedRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        aclose = getattr(self.router, "aclose", None)
        if aclose is not None:
            await aclose()
        self.log.close()

    def __repr__(self) -> str:
        return f"LoggedRouter({self.router!r}, {self.log!r})"


__all__ = ["LoggedRouter", "Routes"]

"""Fixtures for the gateway tests: scripted routers, a running gateway, and a time limit.

Every test here runs under a SIGALRM deadline (60 s, 600 s for local models), and every
client call has its own timeout, so a gateway that hangs fails the test instead of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from demur import (
    Abstain,
    AskHuman,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    Reply,
    RetryPolicy,
    Router,
    ScriptedModel,
    SqliteQueue,
)
from demur.server import BackgroundServer, ServerSettings, create_app
from tests.time_limit import time_limit

KEY = "sk-test-key"
TEST_TIMEOUT_S = 60
LOCAL_MODEL_TIMEOUT_S = 600


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    slow = request.node.get_closest_marker("local_model") is not None
    seconds = LOCAL_MODEL_TIMEOUT_S if slow else TEST_TIMEOUT_S

    with time_limit(request.node.name, seconds):
        yield


WEAK = Reply.confident("Lyon", 0.3)
STRONG = Reply.confident("Paris is the capital", 0.9)


def scripted_router(
    weak: Reply | str | BaseException = WEAK,
    strong: Reply | str | BaseException = STRONG,
    *,
    rungs: list[Any] | None = None,
    queue: SqliteQueue | None = None,
    **options: Any,
) -> Router:
    """weak answers first; below 0.5 the ladder escalates to strong, then abstains."""
    return Router(
        [ScriptedModel("weak", [weak]), ScriptedModel("strong", [strong])],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=rungs or [Escalate("strong"), Abstain("I am not sure.")]),
        queue=queue,
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01),
        **options,
    )


@contextmanager
def running(router: Router, **settings: Any) -> Iterator[BackgroundServer]:
    """The gateway for `router` on a free loopback port; keys default to KEY."""
    settings.setdefault("api_keys", (KEY,))
    settings.setdefault("api_key_env", None)
    tracer_provider = settings.pop("tracer_provider", None)
    app = create_app(router, ServerSettings(**settings), tracer_provider=tracer_provider)
    with BackgroundServer(app) as server:
        yield server


@pytest.fixture
def gateway() -> Iterator[BackgroundServer]:
    """A gateway in front of the default scripted router (escalation to 'Paris ...')."""
    with running(scripted_router()) as server:
        yield server


@pytest.fixture
def human_router(tmp_path: Any) -> Router:
    """A router whose ladder ends with a person: weak and strong both unsure."""
    return scripted_router(
        Reply.confident("Lyon", 0.2),
        Reply.confident("Marseille", 0.3),
        rungs=[Escalate("strong"), AskHuman()],
        queue=SqliteQueue(tmp_path / "queue.db"),
    )

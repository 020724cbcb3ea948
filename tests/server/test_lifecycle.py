"""Readiness follows the models' warm-up; shutdown drains: /readyz 503, new questions 503,
routes in flight finish, and those past the drain window get a clean 503."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from demur import (
    Abstain,
    Ladder,
    MeanTokenLogprob,
    ModelNotFoundError,
    Reply,
    Router,
    ScriptedModel,
)
from demur.server import BackgroundServer, ServerSettings, create_app
from tests.server.conftest import KEY

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


class LoadingModel(ScriptedModel):
    """A scripted model that loads ahead of time, as local models do, once `gate` opens."""

    def __init__(self, gate: threading.Event, error: Exception | None = None) -> None:
        super().__init__("local", [Reply.confident("Paris", 0.9)])
        self.gate = gate
        self.error = error
        self.loaded = False

    async def aload(self) -> None:
        await asyncio.to_thread(self.gate.wait, 30)
        if self.error is not None:
            raise self.error
        self.loaded = True


def router_of(*models: Any) -> Router:
    return Router(list(models), estimators=[MeanTokenLogprob()], policy=Ladder(0.5, [Abstain()]))


@contextmanager
def serving(router: Router, shutdown_timeout_s: float = 5.0) -> Iterator[BackgroundServer]:
    settings = ServerSettings(api_keys=(KEY,), api_key_env=None)
    server = BackgroundServer(create_app(router, settings), shutdown_timeout_s=shutdown_timeout_s)
    with server:
        yield server


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def ask(server: BackgroundServer) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demur", "messages": QUESTION},
        headers=AUTH,
        timeout=30,
    )


def in_background(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def readiness(server: BackgroundServer) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=5)


def test_readiness_turns_200_only_once_the_models_are_loaded():
    gate = threading.Event()
    model = LoadingModel(gate)
    try:
        with serving(router_of(model)) as server:
            starting = readiness(server)
            assert starting.status_code == 503 and starting.json()["status"] == "starting"
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            assert not model.loaded
            gate.set()
            eventually(lambda: readiness(server).status_code == 200)
            assert model.loaded
            assert readiness(server).json() == {"status": "ready", "models": ["local"]}
    finally:
        gate.set()


def test_a_model_that_fails_to_load_keeps_readiness_at_503_naming_it():
    gate = threading.Event()
    gate.set()
    model = LoadingModel(gate, ModelNotFoundError("no GGUF file at /models/x.gguf"))
    with serving(router_of(model)) as server:
        eventually(lambda: readiness(server).json()["status"] != "starting")
        failed = readiness(server)
    assert failed.status_code == 503
    assert failed.json()["status"] == "failed" and failed.json()["model"] == "local"
    assert "/models" not in failed.text


def test_draining_refuses_new_questions_while_the_route_in_flight_finishes():
    slow = ScriptedModel("slow", [Reply(text="Paris", logprobs=(-0.01,), delay_s=1.5)])
    with serving(router_of(slow)) as server:
        gateway = server._server.gateway
        thread, results = in_background(lambda: ask(server))
        eventually(lambda: gateway.drain.in_flight == 1)
        server._server.request_stop()  # what SIGTERM does
        draining = readiness(server)
        refused = ask(server)
        thread.join(30)
    assert draining.status_code == 503
    assert draining.json() == {"status": "draining", "in_flight": 1}
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["connection"] == "close"
    finished = results[0]
    assert isinstance(finished, httpx.Response) and finished.status_code == 200
    assert finished.json()["choices"][0]["message"]["content"] == "Paris"


def test_a_route_past_the_drain_window_gets_a_clean_503():
    stuck = ScriptedModel("stuck", [Reply(text="Paris", logprobs=(-0.01,), delay_s=20)])
    with serving(router_of(stuck), shutdown_timeout_s=0.3) as server:
        gateway = server._server.gateway
        thread, results = in_background(lambda: ask(server))
        eventually(lambda: gateway.drain.in_flight == 1)
        started = time.monotonic()
        server.stop()
        thread.join(10)
    cut = results[0]
    assert isinstance(cut, httpx.Response) and cut.status_code == 503
    assert cut.json()["error"]["code"] == "shutting_down"
    assert "drain window" in cut.json()["error"]["message"]
    assert time.monotonic() - started < 5

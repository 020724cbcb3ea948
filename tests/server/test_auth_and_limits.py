"""API keys, rate limits, concurrency limits, and the refusal to serve openly."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import openai
import pytest

from demur import ConfigError, Reply
from demur.server import ServerSettings, create_app
from demur.server.auth import ApiKeys, key_id
from demur.server.run import JsonFormatter
from demur.server.settings import read_key_file
from demur.web.limits import BodyTooLarge, RateLimiter, read_limited
from tests.server.conftest import KEY, running, scripted_router

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def ask(server, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demur", "messages": QUESTION},
        headers=headers,
        timeout=10,
    )


# --- keys ------------------------------------------------------------------------------------


def test_api_keys_match_exactly_and_name_keys_by_hash():
    keys = ApiKeys(["sk-one", "sk-two"])
    assert keys.check("Bearer sk-two") == key_id("sk-two")
    assert keys.check("bearer sk-one") == key_id("sk-one")
    for header in (None, "", "sk-one", "Basic sk-one", "Bearer sk-on", "Bearer sk-one2"):
        assert keys.check(header) is None
    assert key_id("sk-one").startswith("key-") and "sk-one" not in key_id("sk-one")
    assert not ApiKeys([])


@pytest.mark.parametrize(
    ("key", "message"),
    [("sk-wrong", "Incorrect API key provided"), (None, "didn't provide an API key")],
)
def test_a_wrong_or_missing_key_is_401(gateway, key, message):
    response = ask(gateway, key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and message in error["message"]


def test_the_openai_client_sees_an_authentication_error(gateway):
    client = openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0, timeout=5)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demur", messages=QUESTION)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_keys_come_from_the_environment_variable_too(monkeypatch):
    monkeypatch.setenv("GATEWAY_KEYS", "sk-env-1, sk-env-2")
    settings = ServerSettings(api_keys=("sk-conf",), api_key_env="GATEWAY_KEYS")
    assert settings.resolved_keys() == ("sk-conf", "sk-env-1", "sk-env-2")
    assert "sk-conf" not in repr(settings)
    with running(scripted_router(), api_keys=(), api_key_env="GATEWAY_KEYS") as server:
        assert ask(server, "sk-env-2").status_code == 200
        assert ask(server, "sk-conf").status_code == 401


def test_key_files_skip_comments_and_must_hold_a_key(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("# team a\nsk-a\n\n  sk-b  \n")
    assert read_key_file(path) == ("sk-a", "sk-b")
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no key"):
        read_key_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_key_file(tmp_path / "missing.txt")


def test_no_keys_on_a_public_host_is_refused_unless_allowed():
    router = scripted_router()
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without API keys"):
        create_app(router, ServerSettings(host="0.0.0.0"), environ={})
    create_app(router, ServerSettings(host="0.0.0.0", allow_unauthenticated=True), environ={})
    create_app(router, ServerSettings(host="0.0.0.0"), environ={"DEMUR_API_KEYS": "sk-1"})
    for host in ("127.0.0.1", "localhost", "::1"):
        create_app(router, ServerSettings(host=host), environ={})


def test_without_keys_on_loopback_anyone_may_call():
    with running(scripted_router(), api_keys=()) as server:
        assert ask(server, None).status_code == 200


# --- rate and concurrency limits -------------------------------------------------------------


def test_token_bucket_refills_at_the_rate():
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    now[0] += 100
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # never more than the burst


def test_forgotten_buckets_are_bounded():
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=10)
    for i in range(100):
        limiter.acquire(f"client-{i}")
    assert len(limiter._buckets) == 10


def test_over_the_rate_limit_is_429_with_retry_after_per_key(monkeypatch):
    with running(
        scripted_router(),
        api_keys=(KEY, "sk-other"),
        rate_limit_rps=0.5,
        rate_limit_burst=2,
    ) as server:
        assert [ask(server).status_code for _ in range(2)] == [200, 200]
        limited = ask(server)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        error = limited.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and "0.5 requests/s" in error["message"]
        assert ask(server, "sk-other").status_code == 200  # another key, another bucket
        assert ask(server, "sk-wrong").status_code == 401  # auth comes first


def test_the_openai_client_sees_a_rate_limit_error():
    with running(scripted_router(), rate_limit_rps=0.1, rate_limit_burst=1) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=5)
        client.chat.completions.create(model="demur", messages=QUESTION)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="demur", messages=QUESTION)


async def test_routes_beyond_max_in_flight_get_503():
    slow = Reply(text="Paris", logprobs=(-0.1,), delay_s=1.0)
    with running(scripted_router(slow), max_in_flight=1) as server:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ) as client:
            body = {"model": "demur", "messages": QUESTION}
            first = asyncio.create_task(client.post("/chat/completions", json=body))
            await asyncio.sleep(0.3)
            second = await client.post("/chat/completions", json=body)
            assert second.status_code == 503 and second.headers["retry-after"] == "1"
            assert (await first).status_code == 200


async def test_read_limited_counts_what_arrives():
    async def chunks(*parts: bytes):
        for part in parts:
            yield part

    assert await read_limited(chunks(b"ab", b"cd"), 4) == b"abcd"
    with pytest.raises(BodyTooLarge):
        await read_limited(chunks(b"ab", b"cde"), 4)
    with pytest.raises(BodyTooLarge, match="5 bytes"):
        await read_limited(chunks(), 4, declared=5)


# --- what the logs say about keys ------------------------------------------------------------


def request_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[dict]:
    """The access-log lines, once `count` are in: each is written just after its response."""
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in caplog.records if r.name == "demur.server" and r.msg == "request"]
        if len(records) >= count or time.monotonic() > deadline:
            return [json.loads(JsonFormatter().format(r)) for r in records]
        time.sleep(0.01)


def test_logs_carry_the_key_id_never_the_key(gateway, caplog):
    caplog.set_level(logging.INFO, logger="demur.server")
    assert ask(gateway).status_code == 200
    assert ask(gateway, "sk-wrong").status_code == 401
    lines = request_lines(caplog, 2)
    assert [line["status"] for line in lines] == [200, 401]
    assert lines[0]["key_id"] == key_id(KEY)
    assert "key_id" not in lines[1]
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert KEY not in text and "sk-wrong" not in text

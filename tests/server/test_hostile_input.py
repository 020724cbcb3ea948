"""Hostile requests to the gateway: each is a clean OpenAI-shaped 4xx, never a 500 or a
traceback, and none files a review ticket; cross-site requests, rebound hosts and key guessing
are refused."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demur import AskHuman, Escalate, Reply, SqliteQueue
from demur.server import BackgroundServer
from tests.server.conftest import KEY, running, scripted_router

AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
QUESTION = '[{"role": "user", "content": "What is the capital of France?"}]'


def unsure_router(queue: SqliteQueue):
    """Both models unsure: every question that gets through files a ticket."""
    return scripted_router(
        Reply.confident("Lyon", 0.2),
        Reply.confident("Marseille", 0.3),
        rungs=[Escalate("strong"), AskHuman()],
        queue=queue,
    )


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue.db")
    yield q
    q.close()


def tickets(queue: SqliteQueue) -> int:
    return len(queue.tickets(status=("pending", "claimed", "resolved", "cancelled")))


def post(server: BackgroundServer, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions", content=content, headers=headers, timeout=10
    )


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]
    assert not logged, [r.getMessage() for r in logged]


HOSTILE_BODIES = [
    ('{"model": "demur", "messages": QUESTION, "n": ' + "7" * 5000 + "}", "integer of 5000"),
    ('{"model": "demur", "messages": QUESTION, "x": ' + "[" * 1000 + "]" * 1000 + "}", "nests"),
    ('{"model": "demur", "messages": QUESTION, "x": ' + "[" * 70 + "]" * 70 + "}", "nests"),
    (
        '{"model": "demur", "messages": [{"role": "user", "content": "Capital \\ud800?"}]}',
        "lone UTF-16 surrogate",
    ),
    ('{"model": "demur", "messages": QUESTION, "temperature": 1e999}', "must be finite"),
    ('{"model": "demur", "messages": QUESTION, "temperature": NaN}', "must be finite"),
]


def test_hostile_bodies_are_400_without_a_traceback_or_a_ticket(queue, caplog):
    caplog.set_level(logging.INFO)
    with running(unsure_router(queue)) as server:
        for body, reason in HOSTILE_BODIES:
            response = post(server, body.replace("QUESTION", QUESTION).encode(), AUTH)
            assert response.status_code == 400, (reason, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_json" and reason in error["message"]
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert tickets(queue) == 0
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        None,
    ],
)
def test_a_body_not_declared_as_json_is_415(content_type):
    headers = {"Authorization": f"Bearer {KEY}"}
    if content_type:
        headers["Content-Type"] = content_type
    body = ('{"model": "demur", "messages": ' + QUESTION + "}").encode()
    with running(scripted_router()) as server:
        response = post(server, body, headers)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"
        headers["Content-Type"] = "application/json; charset=utf-8"
        assert post(server, body, headers).status_code == 200


def test_a_cross_site_post_to_a_keyless_loopback_gateway_files_no_ticket(queue):
    body = ('{"model": "demur", "messages": ' + QUESTION + "}").encode()
    with running(unsure_router(queue), api_keys=()) as server:
        # What a page on another site can send without a preflight: text/plain, its Origin.
        simple = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
        refused = post(server, body, simple)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "cross_origin_refused"
        assert "access-control-allow-origin" not in refused.headers
        as_json = post(server, body, {**simple, "Content-Type": "application/json"})
        assert as_json.status_code == 403
        # DNS rebinding: the page's own origin, its name now pointing at 127.0.0.1.
        rebound = {"Host": f"evil.example:{server.port}", "Content-Type": "application/json"}
        response = post(server, body, rebound)
        assert response.status_code == 421
        assert response.json()["error"]["code"] == "host_not_allowed"
        assert tickets(queue) == 0
        assert post(server, body, {"Content-Type": "application/json"}).status_code == 200


def test_cors_origins_let_a_listed_web_app_call_the_gateway():
    body = ('{"model": "demur", "messages": ' + QUESTION + "}").encode()
    origin = "https://app.example.org"
    with running(scripted_router(), cors_origins=(origin,)) as server:
        preflight = httpx.options(
            f"{server.base_url}/chat/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=5,
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        response = post(server, body, {**AUTH, "Origin": origin})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert "x-demur-action" in response.headers["access-control-expose-headers"]
        assert post(server, body, {**AUTH, "Origin": "https://other.example"}).status_code == 403


def test_allowed_hosts_replace_the_loopback_default():
    with running(scripted_router(), allowed_hosts=("gateway.internal",)) as server:
        url = f"{server.url}/healthz"
        assert httpx.get(url, headers={"Host": "gateway.internal"}, timeout=5).status_code == 200
        assert httpx.get(url, timeout=5).status_code == 421


def test_key_guessing_is_limited_per_client_address(caplog):
    body = ('{"model": "demur", "messages": ' + QUESTION + "}").encode()
    wrong = {**AUTH, "Authorization": "Bearer sk-guess"}
    with running(scripted_router(), auth_failure_rate_per_s=0.5, auth_failure_burst=3) as server:
        statuses = [post(server, body, wrong).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = post(server, body, wrong)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        error = limited.json()["error"]
        assert error["code"] == "too_many_failed_authentications"
        # While locked out nothing is checked, not even the right key: a 429 says nothing.
        assert post(server, body, AUTH).status_code == 429
        # A forged X-Forwarded-For does not make a new client (no proxy is trusted).
        forged = {**wrong, "X-Forwarded-For": "198.51.100.7"}
        assert post(server, body, forged).status_code == 429
        time.sleep(2.1)  # one failure's worth of the bucket refills
        assert post(server, body, AUTH).status_code == 200
        assert post(server, body, wrong).status_code == 401
        assert post(server, body, wrong).status_code == 429


def test_a_trusted_proxy_names_the_client_whose_failures_count():
    body = ('{"model": "demur", "messages": ' + QUESTION + "}").encode()
    wrong = {**AUTH, "Authorization": "Bearer sk-guess"}
    with running(scripted_router(), auth_failure_burst=1, trusted_proxies=("127.0.0.1",)) as server:
        first = {**wrong, "X-Forwarded-For": "198.51.100.7"}
        assert [post(server, body, first).status_code for _ in range(2)] == [401, 429]
        other = {**AUTH, "X-Forwarded-For": "198.51.100.8"}
        assert post(server, body, other).status_code == 200


def test_a_client_hanging_up_mid_body_leaves_no_traceback(caplog):
    caplog.set_level(logging.INFO)
    with running(scripted_router()) as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + f"Authorization: Bearer {KEY}\r\n".encode()
                    + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                    + b'{"model": "demur", "mess'
                )
                time.sleep(0.2)
        time.sleep(0.3)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    no_tracebacks(caplog)
    assert "the client disconnected before sending the whole request" in caplog.text


def test_serve_flags_reach_the_settings(monkeypatch, tmp_path: Path):
    from demur.cli import main
    from tests.server.test_serve_process import SCRIPTED_CONFIG

    config = tmp_path / "demur.yaml"
    config.write_text(SCRIPTED_CONFIG.replace("QUEUE", str(tmp_path / "q.db")))
    seen = {}
    monkeypatch.setattr(
        "demur.server.run.serve", lambda router, settings, **kw: seen.update(s=settings)
    )
    args = ["serve", "--config", str(config), "--traces", "none", "--metrics-require-auth"]
    args += ["--auth-failure-rate", "0.2", "--auth-failure-burst", "4"]
    args += ["--cors-origin", "https://app.example.org", "--header-timeout", "3"]
    args += ["--body-timeout", "6", "--max-connections", "64", "--max-header-bytes", "8192"]
    args += ["--trusted-proxy", "10.1.2.3", "--allowed-host", "*.example.org"]
    assert main(args) == 0
    settings = seen["s"]
    assert settings.metrics_require_auth
    assert (settings.auth_failure_rate_per_s, settings.auth_failure_burst) == (0.2, 4)
    assert settings.cors_origins == ("https://app.example.org",)
    assert (settings.header_timeout_s, settings.body_timeout_s) == (3.0, 6.0)
    assert (settings.max_connections, settings.max_header_bytes) == (64, 8192)
    assert settings.trusted_proxies == ("10.1.2.3",)
    assert settings.allowed_hosts == ("*.example.org",)


def test_a_cors_origin_with_a_path_is_refused_naming_the_fix():
    from demur.server import ServerSettings

    with pytest.raises(ValueError, match="CORS origin 'https://app.example.org/' is not an"):
        ServerSettings(cors_origins=("https://app.example.org/",))
    assert ServerSettings(cors_origins=("HTTP://Localhost:5173", "*")).cors_origins == (
        "http://localhost:5173",
        "*",
    )

"""Hostile clients of the reviewer app: rebound hosts, forged client addresses, hang-ups, and
the connection flags of `demur review`."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from demur.cli import main
from demur.queue import SqliteQueue
from demur.review import ReviewServer, ReviewSettings, create_review_app
from tests.review.conftest import TOKENS, csrf_of


def test_a_rebound_host_is_421_and_loopback_names_are_served(queue: SqliteQueue):
    app = create_review_app(queue, ReviewSettings(tokens=TOKENS, tokens_env=None))
    with TestClient(app, base_url="http://localhost:8080", follow_redirects=False) as client:
        assert client.get("/login").status_code == 200
        assert client.get("/login", headers={"host": "127.0.0.1:8080"}).status_code == 200
        rebound = client.get("/login", headers={"host": "evil.example:8080"})
        assert rebound.status_code == 421 and "Wrong address" in rebound.text
        assert "content-security-policy" in rebound.headers
        login = client.post("/login", data={"token": "x"}, headers={"host": "evil.example:8080"})
        assert login.status_code == 421


def test_forged_x_forwarded_for_does_not_escape_the_sign_in_limit(queue: SqliteQueue):
    settings = ReviewSettings(tokens=TOKENS, tokens_env=None, login_burst=3, login_rate_per_s=0.1)
    statuses = []
    with (
        ReviewServer(create_review_app(queue, settings)) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        for i in range(5):
            csrf = csrf_of(client.get("/login").text)
            response = client.post(
                "/login",
                data={"csrf": csrf, "token": "wrong-token-0123456789"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]


def test_a_browser_hanging_up_mid_form_leaves_no_traceback(queue: SqliteQueue, caplog):
    caplog.set_level(logging.INFO)
    settings = ReviewSettings(tokens=TOKENS, tokens_env=None)
    with ReviewServer(create_review_app(queue, settings)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 400\r\n\r\ncsrf=abc&tok"
            )
            time.sleep(0.2)
        time.sleep(0.3)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    logged = [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]
    assert not logged, [r.getMessage() for r in logged]


def test_review_connection_flags_reach_the_settings(monkeypatch, tmp_path: Path):
    SqliteQueue(tmp_path / "queue.db").close()
    monkeypatch.setenv("DEMUR_REVIEWER_TOKENS", f"ana:{'a' * 20}")
    seen: dict[str, ReviewSettings] = {}

    def fake_serve(queue, settings, **kwargs) -> None:
        seen["settings"] = settings
        queue.close()

    monkeypatch.setattr("demur.review.run.serve_review", fake_serve)
    args = ["review", "--queue-path", str(tmp_path / "queue.db")]
    args += ["--header-timeout", "2", "--body-timeout", "4", "--keep-alive-timeout", "1"]
    args += ["--max-connections", "50", "--max-keep-alive-requests", "9"]
    args += ["--trusted-proxy", "10.0.0.0/8", "--allowed-host", "review.lan"]
    assert main(args) == 0
    settings = seen["settings"]
    assert (settings.header_timeout_s, settings.body_timeout_s) == (2.0, 4.0)
    assert (settings.keep_alive_timeout_s, settings.max_connections) == (1.0, 50)
    assert settings.max_keep_alive_requests == 9
    assert settings.trusted_proxies == ("10.0.0.0/8",)
    assert settings.allowed_hosts == ("review.lan",)


def test_a_bad_trusted_proxy_flag_is_exit_2(monkeypatch, capsys, tmp_path: Path):
    SqliteQueue(tmp_path / "queue.db").close()
    monkeypatch.setenv("DEMUR_REVIEWER_TOKENS", f"ana:{'a' * 20}")
    args = ["review", "--queue-path", str(tmp_path / "queue.db"), "--trusted-proxy", "nginx"]
    assert main(args) == 2
    assert "trusted proxy 'nginx' is not an IP address" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--header-timeout", "0"], ["--max-connections", "0"]])
def test_non_positive_limits_are_refused(monkeypatch, capsys, tmp_path: Path, bad):
    SqliteQueue(tmp_path / "queue.db").close()
    monkeypatch.setenv("DEMUR_REVIEWER_TOKENS", f"ana:{'a' * 20}")
    assert main(["review", "--queue-path", str(tmp_path / "queue.db"), *bad]) == 2
    assert "invalid review settings" in capsys.readouterr().err

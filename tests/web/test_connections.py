"""Connection limits on a real uvicorn server: read timeouts, header size, keep-alive limits,
the connection cap, and which forwarded headers are believed."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from demur.web.settings import ListenerSettings, default_max_connections
from tests.web.conftest import connect, read_until_closed, serving, trickle

GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def test_a_client_trickling_its_headers_gets_408_and_is_disconnected():
    with serving(header_timeout_s=1.0) as server, connect(server) as sock:
        took = trickle(sock, GET + b"X-Slow: " + b"a" * 100, every_s=0.2, until_s=10)
        reply = read_until_closed(sock)
    assert 0.8 < took < 3.0, took
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"connection: close" in reply and b"took too long" in reply


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout():
    with serving(header_timeout_s=1.0) as server, connect(server) as sock:
        started = time.monotonic()
        reply = read_until_closed(sock)
        took = time.monotonic() - started
    assert reply == b"" and 0.8 < took < 3.0, (reply, took)


def test_a_client_trickling_its_body_gets_408_and_is_disconnected():
    head = GET.replace(b"GET /", b"POST /echo") + b"Content-Length: 100\r\n\r\n"
    with serving(body_timeout_s=1.0) as server, connect(server) as sock:
        sock.sendall(head)
        took = trickle(sock, b"x" * 100, every_s=0.2, until_s=10)
        reply = read_until_closed(sock)
    assert 0.8 < took < 3.0, took
    assert reply.startswith(b"HTTP/1.1 408") and b"body took too long" in reply


def test_a_body_trickling_after_an_early_answer_is_cut_off_at_the_body_timeout():
    # The app answers 401 without reading the body; the rest may not keep the connection.
    head = GET.replace(b"GET /", b"POST /refuse") + b"Content-Length: 100\r\n\r\n"
    with serving(body_timeout_s=1.0, keep_alive_timeout_s=5.0) as server, connect(server) as s:
        s.sendall(head)
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 401")
        started = time.monotonic()
        for _ in range(50):
            try:
                s.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                break
        took = time.monotonic() - started
    assert took < 2.5, took


def test_headers_over_the_limit_are_431():
    with serving(max_header_bytes=2048) as server, connect(server) as sock:
        sock.sendall(GET + b"X-Big: " + b"a" * 5000 + b"\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431")


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout():
    with serving(keep_alive_timeout_s=1.0) as server, connect(server) as sock:
        sock.sendall(GET + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        took = time.monotonic() - started
    assert 0.8 < took < 3.0, took


def test_a_connection_serves_at_most_max_keep_alive_requests():
    with (
        serving(max_keep_alive_requests=2) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        first, second = client.get("/"), client.get("/")
    assert "connection" not in first.headers
    assert second.headers["connection"] == "close"


def test_at_the_connection_cap_a_new_client_displaces_the_longest_waiting_one():
    with serving(max_connections=4, header_timeout_s=30.0) as server:
        slow = [connect(server) for _ in range(10)]
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # headers never finished
        time.sleep(0.3)
        response = httpx.get(f"{server.url}/", timeout=5)
        closed = 0
        for sock in slow:
            sock.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                closed += sock.recv(1) == b""
            sock.close()
    assert response.status_code == 200
    assert closed >= 7  # at most 4 open at once, one of them the request above


def test_when_every_connection_is_busy_a_new_one_gets_503():
    head = GET.replace(b"GET /", b"POST /echo") + b"Content-Length: 10\r\n\r\n"
    with serving(max_connections=2, body_timeout_s=30.0) as server:
        busy = [connect(server) for _ in range(2)]
        for sock in busy:
            sock.sendall(head + b"x")  # inside a request: not to be displaced
        time.sleep(0.3)
        response = httpx.get(f"{server.url}/", timeout=5)
        for sock in busy:
            sock.close()
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_the_default_connection_cap_stays_under_the_open_file_limit(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 4096))
    assert default_max_connections() == 128
    assert ListenerSettings().connection_cap == 128
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert default_max_connections() == 1024
    assert ListenerSettings(max_connections=10).connection_cap == 10


@pytest.mark.parametrize(
    ("trusted", "seen"), [((), "127.0.0.1"), (("127.0.0.0/8",), "203.0.113.9")]
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(trusted, seen):
    with serving(trusted_proxies=trusted) as server:
        response = httpx.get(
            f"{server.url}/", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5
        )
    assert response.json()["client"] == seen


def test_listener_settings_name_the_bad_field():
    with pytest.raises(ValueError, match="trusted proxy 'proxy.local' is not an IP address"):
        ListenerSettings(trusted_proxies=("proxy.local",))
    with pytest.raises(ValueError, match="allowed host 'https://x.org' is not a host name"):
        ListenerSettings(allowed_hosts=("https://x.org",))
    assert ListenerSettings().host_names("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}
    assert "demur.lan" in ListenerSettings().host_names("demur.lan")
    assert ListenerSettings(allowed_hosts=("A.org",)).host_names("::1") == {"a.org"}

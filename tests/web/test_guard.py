"""RequestGuard: the Host allow-list, the cross-origin policy, and 503 at shutdown."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from demur.web.guard import RequestGuard
from demur.web.hosts import host_allowed, host_name
from tests.web.conftest import serving, toy_app


def refuse(status: int, message: str, code: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def guarded(**options: object) -> Starlette:
    app = toy_app()
    options.setdefault("hosts", {"localhost", "127.0.0.1", "::1"})
    return Starlette(
        routes=app.routes, middleware=[Middleware(RequestGuard, refuse=refuse, **options)]
    )


def client(app: Starlette) -> TestClient:
    return TestClient(app, base_url="http://localhost")


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:8000", "localhost"), ("[::1]:80", "::1"), ("EXAMPLE.org.", "example.org")],
)
def test_host_names_lose_port_brackets_and_case(header, name):
    assert host_name(header) == name


def test_host_patterns():
    assert host_allowed("api.example.org:443", {"*.example.org"})
    assert not host_allowed("example.org.evil.net", {"*.example.org"})
    assert host_allowed("anything", {"*"}) and not host_allowed("", {"*"})


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.net"])
def test_a_host_not_allowed_is_421_before_the_endpoint_runs(host):
    response = client(guarded()).get("/", headers={"host": host})
    assert response.status_code == 421 and response.json()["code"] == "host_not_allowed"
    assert "--allowed-host" in response.json()["message"]


def test_loopback_hosts_are_allowed():
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8000"):
        assert client(guarded()).get("/", headers={"host": host}).status_code == 200


def test_with_no_cors_origins_any_browser_origin_is_403_but_plain_clients_pass():
    app = client(guarded(origins=()))
    response = app.post("/echo", content=b"{}", headers={"origin": "https://evil.example"})
    assert response.status_code == 403 and response.json()["code"] == "cross_origin_refused"
    assert "--cors-origin" in response.json()["message"]
    assert app.post("/echo", content=b"{}", headers={"origin": "null"}).status_code == 403
    assert app.post("/echo", content=b"{}").status_code == 200


def test_a_listed_origin_gets_cors_headers_and_preflight_answers():
    app = client(guarded(origins=("https://app.example.org",), expose_headers=("x-demur-action",)))
    ok = app.post("/echo", content=b"{}", headers={"origin": "https://app.example.org"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example.org"
    assert ok.headers["access-control-expose-headers"] == "x-demur-action"
    assert "Origin" in ok.headers["vary"]
    preflight = app.options(
        "/echo",
        headers={
            "origin": "https://app.example.org",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    other = app.post("/echo", content=b"{}", headers={"origin": "https://app.example.org.evil"})
    assert other.status_code == 403


def test_a_request_cut_off_by_the_shutdown_gets_503_without_a_traceback(caplog):
    caplog.set_level(logging.INFO)
    results: dict[str, httpx.Response] = {}
    with serving(guarded(), shutdown_timeout_s=0.5) as server:

        def call() -> None:
            results["slow"] = httpx.get(f"{server.url}/slow?s=30", timeout=20)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
    caller.join(20)
    response = results["slow"]
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["code"] == "shutting_down"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "cut off by the shutdown" in caplog.text

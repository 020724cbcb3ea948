"""Hostile input and slow clients against a real `demur serve` and `demur review` on loopback.

Processes, all started here on free loopback ports with the open-file limit at 256: an open
gateway (no API keys, the loopback default) and a keyed one, both over a scripted ladder that
hands every question to a person; `demur review` on the same queue; and a third gateway whose
model (an OpenAI-compatible upstream run here) never answers, for the shutdown.

Sections: malformed and hostile requests (bodies, headers, raw HTTP, cross-site posts,
rebound Host names), with real questions in between; wrong-key and wrong-token guessing, with
and without a forged X-Forwarded-For; 150 clients trickling headers and 20 trickling bodies
at each server while /healthz is probed; 300 half-sent requests at once; clients hanging up
mid-body; SIGTERM with routes in flight. Finally every ticket the real questions filed is
claimed and resolved through the review app.

Reported: requests sent, hostile ones, statuses, 5xx by cause (intended: 503 at shutdown or
over the connection cap), crashes (a server exiting before it is told to, or not with 0),
tracebacks in the servers' logs, and tickets lost (filed, but not found or not resolved).

    python -m benchmarks.bench_hostile [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, report
from demur.queue import SqliteQueue

KEY = "sk-bench-hostile"
REVIEWER_TOKEN = "bench-reviewer-token-0123456789"
OPEN_FILES = 256
QUESTION = [{"role": "user", "content": "Who wrote Emma?"}]
CONFIG = """\
models:
  weak: {kind: scripted, replies: [{text: "Persuasion", logprobs: [-1.5]}]}
  strong: {kind: scripted, replies: [{text: "Emma", logprobs: [-1.2]}]}
estimators: [mean_logprob]
policy: {threshold: 0.5, rungs: [{escalate: strong}, human]}
queue: {path: QUEUE}
"""
HANGING_CONFIG = """\
models:
  upstream: {kind: openai, base_url: "BASE_URL", timeout_s: 120, api_key_env: NO_SUCH_KEY_ENV}
estimators: [mean_logprob]
policy: {threshold: 0.5, rungs: [abstain]}
"""


# --- the servers -----------------------------------------------------------------------------


class Process:
    """A `demur` command on port 0; its stderr (JSON log lines) kept for the tracebacks count."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.stopped = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demur.cli", *args, "--port", "0"],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_few_open_files,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_url(self, timeout_s: float = 90.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("{") and '"listening"' in line:
                    self.url = str(json.loads(line)["url"])
                    return self.url
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.lines))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def crashed(self) -> bool:
        """Whether the process ended before it was told to."""
        return not self.stopped and self.proc.poll() is not None

    def stop(self, timeout_s: float = 60.0) -> int:
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        return code

    def tracebacks(self) -> list[str]:
        found = []
        for line in self.lines:
            if "Traceback" in line or "Exception in ASGI" in line or '"exception":' in line:
                found.append(line[:300])
        return found


def _few_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, hard))


class _Hanging(BaseHTTPRequestHandler):
    """An upstream that takes every request and never answers (until the server stops)."""

    def do_POST(self) -> None:
        self.server.hung += 1  # type: ignore[attr-defined]
        time.sleep(120)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def hanging_upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    server.daemon_threads = True
    server.hung = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- tallies ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What every request got back; a 5xx is intended only where the case says so."""

    requests: int = 0
    hostile: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    hostile_statuses: Counter[str] = field(default_factory=Counter)
    cases: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    server_errors: Counter[str] = field(default_factory=Counter)

    def record(
        self, case: str, status: int | None, expected: set[int | None], *, hostile: bool = True
    ) -> None:
        self.requests += 1
        self.hostile += hostile
        self.statuses[str(status)] += 1
        if hostile:
            self.hostile_statuses[str(status)] += 1
            self.cases.add(case)
        if status is not None and status >= 500:
            cause = "intended" if status in expected else "unintended"
            self.server_errors[f"{cause}: {case} -> {status}"] += 1
        if status not in expected:
            self.unexpected.append(f"{case}: got {status}, expected {sorted(map(str, expected))}")


def raw_status(port: int, data: bytes, *, hang_up: bool = False) -> int | None:
    """Send raw bytes; the status the server answers (None: it closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if hang_up:
            return None
        reply = b""
        try:
            while b"\r\n" not in reply and (chunk := sock.recv(4096)):
                reply += chunk
        except OSError:
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(match.group(1)) if match else None


# --- hostile requests ------------------------------------------------------------------------


def chat_body(extra: str = "", question: str = json.dumps(QUESTION)) -> bytes:
    return ('{"model": "demur", "messages": ' + question + extra + "}").encode()


JSON_TYPE = {"Content-Type": "application/json"}
CHAT_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
GATEWAY_CASES: list[tuple[str, dict[str, str], bytes, set[int | None]]] = [
    ("integer of 5000 digits", JSON_TYPE, chat_body(', "n": ' + "7" * 5000), {400}),
    ("negative integer of 5000 digits", JSON_TYPE, chat_body(', "n": -' + "7" * 5000), {400}),
    ("nesting 1000 deep", JSON_TYPE, chat_body(', "x": ' + "[" * 1000 + "]" * 1000), {400}),
    ("nesting 100 deep", JSON_TYPE, chat_body(', "x": ' + "{" + '"a":{' * 99 + "}" * 100), {400}),
    (
        "lone surrogate in the question",
        JSON_TYPE,
        chat_body(question='[{"role": "user", "content": "Emma \\ud800?"}]'),
        {400},
    ),
    ("lone surrogate in a key", JSON_TYPE, chat_body(', "\\udc00": 1'), {400}),
    ("NaN", JSON_TYPE, chat_body(', "temperature": NaN'), {400}),
    ("1e999", JSON_TYPE, chat_body(', "temperature": 1e999'), {400}),
    ("invalid UTF-8", JSON_TYPE, b'{"model": "demur", "messages": "\xff\xfe"}', {400}),
    ("truncated JSON", JSON_TYPE, chat_body()[:-5], {400}),
    ("a JSON array", JSON_TYPE, b"[1, 2, 3]", {400}),
    ("an empty body", JSON_TYPE, b"", {400}),
    ("messages of the wrong type", JSON_TYPE, chat_body(question="5"), {422}),
    (
        "a NUL in the question",
        JSON_TYPE,
        chat_body(question='[{"role": "user", "content": "\\u0000"}]'),
        {200, 400, 422},
    ),
    (
        "2 MiB body",
        JSON_TYPE,
        chat_body(question=json.dumps([{"role": "user", "content": "x" * (2 << 20)}])),
        {413},
    ),
    ("text/plain", {"Content-Type": "text/plain"}, chat_body(), {415}),
    ("form-encoded", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", {415}),
    ("JSON in latin-1", {"Content-Type": "application/json; charset=latin-1"}, chat_body(), {415}),
    (
        "cross-site text/plain post",
        {"Content-Type": "text/plain", "Origin": "https://evil.example"},
        chat_body(),
        {403},
    ),
    ("cross-site JSON post", {**JSON_TYPE, "Origin": "https://evil.example"}, chat_body(), {403}),
    ("Origin: null", {**JSON_TYPE, "Origin": "null"}, chat_body(), {403}),
    ("DNS-rebound Host", {**JSON_TYPE, "Host": "evil.example:8000"}, chat_body(), {421}),
    ("Host with a path", {**JSON_TYPE, "Host": "127.0.0.1/x"}, chat_body(), {421}),
]


def gateway_inputs(tally: Tally, gateway: Process, tickets: list[str]) -> None:
    """Every hostile case, with a real question after each; pending answers' tickets kept."""
    url = f"{gateway.url}/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        for case, headers, body, expected in GATEWAY_CASES:
            status = client.post(url, content=body, headers=headers).status_code
            tally.record(f"gateway: {case}", status, expected)
            ask(client, url, tally, tickets)
        for case, path, expected in [
            ("unknown path", "/v1/embeddings", {404}),
            ("NUL in a model id", "/v1/models/%00", {404}),
            ("encoded surrogate in a path", "/v1/models/%ED%A0%80", {404}),
            ("a 4 KiB path", "/" + "a" * 4096, {404}),
            ("wrong method", "/v1/chat/completions", {405}),
        ]:
            tally.record(
                f"gateway: {case}", client.get(f"{gateway.url}{path}").status_code, expected
            )
    port = gateway.port
    head = CHAT_HEAD + b"Content-Type: application/json\r\n"
    raw_cases: list[tuple[str, bytes, set[int | None]]] = [
        ("negative Content-Length", head + b"Content-Length: -5\r\n\r\n", {400}),
        ("Content-Length not a number", head + b"Content-Length: 1e3\r\n\r\n", {400}),
        (
            "Content-Length and chunked",
            head + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            {400},
        ),
        ("a bad chunk size", head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", {400}),
        ("a 100 KiB header", head + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n", {400, 431}),
        ("a 10 MB declared body", head + b"Content-Length: 10000000\r\n\r\n{", {413}),
        ("a NUL in the request line", b"GET /\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {400}),
        ("not HTTP", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64, {400}),
    ]
    for case, data, expected_raw in raw_cases:
        tally.record(f"gateway raw: {case}", raw_status(port, data), expected_raw)


def ask(client: httpx.Client, url: str, tally: Tally, tickets: list[str]) -> None:
    """A real question: 200, handed to a person, its ticket kept to check later."""
    response = client.post(url, json={"model": "demur", "messages": QUESTION})
    tally.record("gateway: a real question", response.status_code, {200}, hostile=False)
    ticket = response.headers.get("x-demur-ticket-id")
    if ticket:
        tickets.append(ticket)
    else:
        tally.unexpected.append(f"a real question got no ticket: {response.text[:200]}")


class Reviewer:
    """A signed-in reviewer's HTTP client."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        page = self.client.get("/login")
        csrf = _csrf(page.text)
        signed = self.client.post("/login", data={"csrf": csrf, "token": REVIEWER_TOKEN})
        if signed.status_code != 303:
            raise RuntimeError(f"could not sign in to the review app: {signed.status_code}")
        self.csrf = _csrf(self.client.get("/").text)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("the review page has no CSRF field")
    return found.group(1)


def review_inputs(tally: Tally, review: Process, ticket: str) -> None:
    reviewer = Reviewer(review.url)
    client = reviewer.client
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for case, params, expected in [
        ("min_priority 10**20", {"min_priority": str(10**20)}, {400}),
        ("min_priority -10**20", {"min_priority": str(-(10**20))}, {400}),
        ("min_priority of 5000 digits", {"min_priority": "9" * 5000}, {400}),
        ("min_priority 1e3", {"min_priority": "1e3"}, {400}),
        ("a NUL in the text filter", {"q": "a\x00b"}, {400}),
        ("a text filter of 5000 characters", {"q": "x" * 5000}, {400}),
        ("offset -1", {"offset": "-1"}, {400}),
        ("offset 10**30", {"offset": str(10**30)}, {400}),
    ]:
        tally.record(f"review: {case}", client.get("/", params=params).status_code, expected)
    for case, path, expected in [
        ("an unknown ticket", "/tickets/nope", {404}),
        ("an encoded surrogate in a ticket id", "/tickets/%ED%A0%80", {404}),
        ("a NUL in a ticket id", "/tickets/%00", {404}),
        ("a 4 KiB ticket id", "/tickets/" + "a" * 4096, {404}),
    ]:
        tally.record(f"review: {case}", client.get(path).status_code, expected)
    claim = f"/tickets/{ticket}/claim"
    for case, headers, content, expected in [
        ("a claim without the CSRF token", form, b"x=1", {403}),
        (
            "a claim from another site",
            {**form, "Origin": "https://evil.example"},
            f"csrf={reviewer.csrf}".encode(),
            {403},
        ),
        (
            "a claim as text/plain",
            {"Content-Type": "text/plain"},
            f"csrf={reviewer.csrf}".encode(),
            {415},
        ),
        (
            "a claim in invalid UTF-8",
            form,
            b"csrf=" + reviewer.csrf.encode() + b"&x=%ff%fe\xff",
            {400},
        ),
        (
            "a claim of 1 MiB",
            form,
            b"csrf=" + reviewer.csrf.encode() + b"&x=" + b"a" * (1 << 20),
            {413},
        ),
        (
            "a claim with 100 fields",
            form,
            "&".join(f"f{i}=1" for i in range(100)).encode(),
            {400, 403},
        ),
        (
            "a claim on a rebound Host",
            {**form, "Host": "evil.example"},
            f"csrf={reviewer.csrf}".encode(),
            {421},
        ),
    ]:
        status = client.post(claim, content=content, headers=headers).status_code
        tally.record(f"review: {case}", status, expected)
    anonymous = httpx.Client(base_url=review.url, timeout=10, follow_redirects=False)
    for case, headers, content, expected in [
        ("a sign-in as text/plain", {"Content-Type": "text/plain"}, b"token=x", {403, 415}),
        (
            "a sign-in from another site",
            {**form, "Origin": "https://evil.example"},
            b"token=x",
            {403},
        ),
        ("a sign-in on a rebound Host", {**form, "Host": "evil.example:8080"}, b"token=x", {421}),
    ]:
        status = anonymous.post("/login", content=content, headers=headers).status_code
        tally.record(f"review: {case}", status, expected)
    anonymous.close()
    client.close()


# --- guessing --------------------------------------------------------------------------------


def guess_summary(statuses: Counter[int], took: float) -> dict[str, Any]:
    """How many guesses were sent, checked (401) and refused unchecked (429), and how fast."""
    return {
        "guesses": sum(statuses.values()),
        "checked": statuses[401],
        "refused_429": statuses[429],
        "checked_per_s": round(statuses[401] / took, 2),
        "seconds": round(took, 1),
    }


def guess_keys(tally: Tally, gateway: Process, seconds: float, forge: bool) -> dict[str, Any]:
    """Wrong keys as fast as one connection goes; how many were checked (401) vs refused."""
    url = f"{gateway.url}/v1/chat/completions"
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        i = 0
        while time.monotonic() - started < seconds:
            headers = {"Authorization": f"Bearer sk-guess-{i}", **JSON_TYPE}
            if forge:
                headers["X-Forwarded-For"] = f"198.51.{i // 250 % 250}.{i % 250}"
            status = client.post(url, content=chat_body(), headers=headers).status_code
            statuses[status] += 1
            tally.record("gateway: a wrong key", status, {401, 429})
            i += 1
    return guess_summary(statuses, time.monotonic() - started)


def guess_tokens(tally: Tally, review: Process, seconds: float) -> dict[str, Any]:
    """Wrong reviewer tokens, each from a forged X-Forwarded-For address."""
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with httpx.Client(base_url=review.url, timeout=10, follow_redirects=False) as client:
        page = client.get("/login")
        tally.record("review: the sign-in page", page.status_code, {200}, hostile=False)
        csrf = _csrf(page.text)
        i = 0
        while time.monotonic() - started < seconds:
            forged = {"X-Forwarded-For": f"203.0.{i // 250 % 250}.{i % 250}"}
            data = {"csrf": csrf, "token": f"wrong-token-{i:020d}"}
            response = client.post("/login", data=data, headers=forged)
            status = response.status_code
            if status == 401:  # the sign-in page again, with a fresh form token
                csrf = _csrf(response.text)
            statuses[status] += 1
            tally.record("review: a wrong token", status, {401, 429})
            i += 1
    return guess_summary(statuses, time.monotonic() - started)


# --- slow clients ----------------------------------------------------------------------------


async def _hold(port: int, head: bytes, trickle: bytes, give_up_s: float) -> float:
    """Connect, send `head`, then `trickle` a byte a second; seconds until the server closed
    the connection (or `give_up_s`)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0
    try:
        writer.write(head)
        await writer.drain()
        for byte in trickle:
            if time.monotonic() - started > give_up_s:
                break
            try:
                if await asyncio.wait_for(reader.read(65536), 1.0) == b"":
                    break  # closed by the server
            except TimeoutError:
                pass
            writer.write(bytes([byte]))
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def _probe(url: str, until: float, tally: Tally, name: str) -> dict[str, Any]:
    latencies, failures = [], 0
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                status = (await client.get(f"{url}/healthz")).status_code
            except httpx.HTTPError:
                status = None
            tally.record(f"{name}: /healthz under slow clients", status, {200}, hostile=False)
            if status == 200:
                latencies.append(time.monotonic() - started)
            else:
                failures += 1
            await asyncio.sleep(0.5)
    return {
        "probes": len(latencies) + failures,
        "failed": failures,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
    }


def _held(times: list[float]) -> dict[str, Any]:
    return {
        "clients": len(times),
        "min_s": round(min(times), 1),
        "median_s": round(statistics.median(times), 1),
        "max_s": round(max(times), 1),
    }


async def slow_clients(tally: Tally, servers: list[Process]) -> dict[str, Any]:
    """150 header tricklers and 20 body tricklers at each server, /healthz probed meanwhile."""
    give_up_s = 60.0
    result: dict[str, Any] = {}
    jobs = []
    for server in servers:
        post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        headers = [
            _hold(server.port, post, b"X-Slow: " + b"a" * 200, give_up_s) for _ in range(150)
        ]
        body_head = post + b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        bodies = [_hold(server.port, body_head, b"{" + b" " * 199, give_up_s) for _ in range(20)]
        jobs.append((server, asyncio.gather(*headers), asyncio.gather(*bodies)))
        tally.requests += 170
        tally.hostile += 170
    until = time.monotonic() + 35
    probes = [_probe(server.url, until, tally, server.name) for server in servers]
    probed = await asyncio.gather(*probes)
    for (server, headers_job, bodies_job), probe in zip(jobs, probed, strict=True):
        result[server.name] = {
            "header_tricklers": _held(await headers_job),
            "body_tricklers": _held(await bodies_job),
            "healthz": probe,
        }
    return result


async def half_sent(tally: Tally, server: Process, count: int = 300) -> dict[str, Any]:
    """`count` requests cut off after their first header line, all held open at once."""
    writers = []
    for _ in range(count):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            writers.append(writer)
        except OSError:
            pass
    tally.requests += count
    tally.hostile += count
    probe = await _probe(server.url, time.monotonic() + 5, tally, f"{server.name} (300 half-sent)")
    for writer in writers:
        writer.close()
    return {"half_sent": count, "connected": len(writers), "healthz": probe}


def hang_ups(tally: Tally, gateway: Process, review: Process, count: int = 25) -> None:
    chat = (
        CHAT_HEAD + b"Content-Type: application/json\r\n"
        b'Content-Length: 500\r\n\r\n{"model": "demur", "mess'
    )
    login = (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 400\r\n\r\ncsrf=ab"
    )
    for _ in range(count):
        gone = raw_status(gateway.port, chat, hang_up=True)
        tally.record("gateway: hang-up mid-body", gone, {None})
        gone = raw_status(review.port, login, hang_up=True)
        tally.record("review: hang-up mid-body", gone, {None})


def shutdown_in_flight(tally: Tally, gateway: Process, routes: int = 5) -> dict[str, Any]:
    """SIGTERM while `routes` questions wait on an upstream that never answers."""
    results: list[int | None] = []

    def call() -> None:
        try:
            response = httpx.post(
                f"{gateway.url}/v1/chat/completions",
                json={"model": "demur", "messages": QUESTION},
                timeout=60,
            )
            results.append(response.status_code)
        except httpx.HTTPError:
            results.append(None)

    callers = [threading.Thread(target=call) for _ in range(routes)]
    for caller in callers:
        caller.start()
    time.sleep(1.0)
    started = time.monotonic()
    code = gateway.stop()
    for caller in callers:
        caller.join(60)
    for status in results:
        tally.record("gateway: a route cut off by the shutdown", status, {503}, hostile=False)
    return {
        "routes": routes,
        "statuses": dict(Counter(str(s) for s in results)),
        "exit_code": code,
        "seconds_to_exit": round(time.monotonic() - started, 1),
    }


# --- nothing lost ----------------------------------------------------------------------------


def resolve_all(tally: Tally, review: Process, tickets: list[str]) -> dict[str, Any]:
    """Claim and answer every filed ticket through the review app."""
    reviewer = Reviewer(review.url)
    resolved = 0
    for ticket in tickets:
        claim = reviewer.client.post(f"/tickets/{ticket}/claim", data={"csrf": reviewer.csrf})
        tally.record("review: claim a filed ticket", claim.status_code, {303}, hostile=False)
        answer = reviewer.client.post(
            f"/tickets/{ticket}/resolve",
            data={"csrf": reviewer.csrf, "action": "answer", "text": "Jane Austen"},
        )
        tally.record("review: resolve a filed ticket", answer.status_code, {303}, hostile=False)
        resolved += claim.status_code == 303 and answer.status_code == 303
    reviewer.client.close()
    return {"filed": len(tickets), "resolved": resolved, "lost": len(tickets) - resolved}


# --- the battery -----------------------------------------------------------------------------


def run() -> dict[str, Any]:
    started = time.monotonic()
    tally = Tally()
    with tempfile.TemporaryDirectory() as folder, hanging_upstream() as upstream:
        tmp = Path(folder)
        queue = tmp / "queue.db"
        config = tmp / "demur.yaml"
        config.write_text(CONFIG.replace("QUEUE", str(queue)))
        SqliteQueue(queue).close()  # `demur review` opens only a queue that exists
        hanging = tmp / "hanging.yaml"
        upstream_url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
        hanging.write_text(HANGING_CONFIG.replace("BASE_URL", upstream_url))
        env = {k: v for k, v in os.environ.items() if k not in ("DEMUR_API_KEYS",)}
        env["PYTHONPATH"] = str(ROOT)
        env["DEMUR_REVIEWER_TOKENS"] = f"bench:{REVIEWER_TOKEN}"
        common = ["--traces", "none"]
        servers = {
            "gateway": Process("gateway", ["serve", "--config", str(config), *common], tmp, env),
            "keyed_gateway": Process(
                "keyed_gateway",
                ["serve", "--config", str(config), *common],
                tmp,
                {**env, "DEMUR_API_KEYS": KEY},
            ),
            "review": Process("review", ["review", "--queue-path", str(queue)], tmp, env),
            "draining_gateway": Process(
                "draining_gateway",
                ["serve", "--config", str(hanging), "--shutdown-timeout", "2", *common],
                tmp,
                env,
            ),
        }
        try:
            for server in servers.values():
                server.wait_for_url()
            gateway, review = servers["gateway"], servers["review"]
            tickets: list[str] = []
            gateway_inputs(tally, gateway, tickets)
            review_inputs(tally, review, tickets[0] if tickets else "none")
            guessing = {
                "gateway_one_address": guess_keys(tally, servers["keyed_gateway"], 3.0, False),
                "gateway_forged_x_forwarded_for": guess_keys(
                    tally, servers["keyed_gateway"], 2.0, True
                ),
                "review_forged_x_forwarded_for": guess_tokens(tally, review, 3.0),
            }
            hang_ups(tally, gateway, review)
            slow = asyncio.run(slow_clients(tally, [gateway, review]))
            slow["half_sent_requests"] = asyncio.run(half_sent(tally, gateway))
            shutdown = shutdown_in_flight(tally, servers["draining_gateway"])
            lost = resolve_all(tally, review, tickets)
            crashes = [name for name, server in servers.items() if server.crashed()]
        finally:
            codes = {name: server.stop() for name, server in servers.items()}
        crashes += [name for name, code in codes.items() if code != 0 and name not in crashes]
        tracebacks = {name: server.tracebacks() for name, server in servers.items()}
    unintended = sum(
        n for cause, n in tally.server_errors.items() if cause.startswith("unintended")
    )
    return {
        "seconds": round(time.monotonic() - started, 1),
        "open_file_limit": OPEN_FILES,
        "requests": tally.requests,
        "hostile_requests": tally.hostile,
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "hostile_cases": dict(sorted(Counter(c.split(":")[0] for c in tally.cases).items())),
        "statuses": dict(sorted(tally.statuses.items())),
        "hostile_statuses": dict(sorted(tally.hostile_statuses.items())),
        "server_errors_by_cause": dict(sorted(tally.server_errors.items())),
        "unintended_5xx": unintended,
        "unexpected": tally.unexpected,
        "crashes": crashes,
        "exit_codes": codes,
        "tracebacks": {name: len(found) for name, found in tracebacks.items()},
        "traceback_lines": [line for found in tracebacks.values() for line in found][:10],
        "guessing": guessing,
        "slow_clients": slow,
        "shutdown": shutdown,
        "tickets": lost,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run()
    report(result, args.json)
    clean = (
        not result["crashes"]
        and not result["unintended_5xx"]
        and not result["tickets"]["lost"]
        and not any(result["tracebacks"].values())
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

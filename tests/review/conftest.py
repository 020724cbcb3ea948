"""Fixtures for the reviewer app's tests: a queue with tickets, the app, signed-in clients.

Every test runs under a SIGALRM deadline (60 s; the browser test 180 s), so a hung server or
browser fails the test instead of the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from demur.queue import CandidateAnswer, SqliteQueue, Ticket, TicketRequest
from demur.review import ReviewSettings, create_review_app
from demur.types import Score
from tests.time_limit import time_limit

ANA = "ana-token-0123456789abcdef"
BEN = "ben-token-0123456789abcdef"
TOKENS = {ANA: "ana", BEN: "ben"}
TEST_TIMEOUT_S = 60
TEST_HOSTS = ("testserver", "localhost", "127.0.0.1")  # TestClient sends Host: testserver
BROWSER_TIMEOUT_S = 180

XSS_SCRIPT = '<script>window.__pwned = "script"; alert("pwned")</script>'
XSS_ATTRIBUTE = '" autofocus onfocus="window.__pwned=\'attr\'" x="'
XSS_IMG = "<img src=x onerror=\"window.__pwned='img'\">"
XSS_TEXTAREA = "</textarea><script>window.__pwned='textarea'</script>"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives a real headless Chromium with Playwright (skipped without "
        "/usr/bin/chromium or the playwright package)",
    )


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    slow = request.node.get_closest_marker("browser") is not None
    seconds = BROWSER_TIMEOUT_S if slow else TEST_TIMEOUT_S

    with time_limit(request.node.name, seconds):
        yield


class Clock:
    """A queue clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path: Path, clock: Clock) -> Iterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue.db", lease_s=60, clock=clock)
    yield q
    q.close()


def ticket_request(question: str = "Capital of France?", **fields: Any) -> TicketRequest:
    """A ticket like the router's: two candidates with per-estimator scores."""
    fields.setdefault("context", ("France's capital is Paris.", "Lyon is in France."))
    fields.setdefault(
        "candidates",
        (
            candidate("weak", "Lyon", 0.2),
            candidate("strong", "Paris", 0.35),
        ),
    )
    fields.setdefault("reason", "confidence 0.35 < threshold 0.5 on strong")
    fields.setdefault("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")
    return TicketRequest(question=question, **fields)


def candidate(model: str, text: str, confidence: float) -> CandidateAnswer:
    details = (
        Score(estimator="mean_logprob", value=-1.2345, confidence=confidence),
        Score(estimator="verbal", status="failed", detail="the model gave no number"),
    )
    return CandidateAnswer(
        model=model,
        text=text,
        confidence=confidence,
        scores={s.estimator: s.confidence for s in details},
        details=details,
    )


@pytest.fixture
def enqueue(queue: SqliteQueue) -> Callable[..., Ticket]:
    def make(question: str = "Capital of France?", **fields: Any) -> Ticket:
        return queue.enqueue(ticket_request(question, **fields))

    return make


def make_client(queue: SqliteQueue, **settings: Any) -> TestClient:
    settings.setdefault("tokens", TOKENS)
    settings.setdefault("tokens_env", None)
    settings.setdefault("allowed_hosts", TEST_HOSTS)
    app = create_review_app(queue, ReviewSettings(**settings))
    return TestClient(app, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(client: TestClient, token: str = ANA) -> str:
    """Sign in; the session's CSRF token."""
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post("/login", data={"csrf": csrf_of(page.text), "token": token})
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


@pytest.fixture
def client(queue: SqliteQueue) -> Iterator[TestClient]:
    with make_client(queue) as c:
        yield c


@pytest.fixture
def ana(client: TestClient) -> tuple[TestClient, str]:
    """A client signed in as ana, and its CSRF token."""
    return client, login(client)

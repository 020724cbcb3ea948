"""End to end in a real headless Chromium: a route waits for a person, who answers in the app.

A router whose ladder ends with a person routes a question (scripted models, instant) and gets
a pending verdict; a thread waits on it with `wait_verdict`. In Chromium, a reviewer signs in,
opens the queue, opens the ticket, claims it, corrects the answer and resolves it; the waiting
call receives the corrected answer. The candidates carry script and attribute injections: the
test checks they show as text and that none of them ran.

Needs Debian's chromium (`apt-get install -y chromium`) and `pip install playwright`; the
browser is launched from /usr/bin/chromium, so `playwright install` is not needed. Without
them the test is skipped, or fails when DEMUR_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.sdk.trace import TracerProvider

from demur import AskHuman, Escalate, Ladder, MeanTokenLogprob, Query, Reply, Router
from demur import ScriptedModel as Scripted
from demur.queue import SqliteQueue, wait_verdict
from demur.review import ReviewServer, ReviewSettings, create_review_app
from demur.types import Verdict
from tests.review.conftest import ANA, XSS_ATTRIBUTE, XSS_IMG, XSS_SCRIPT, XSS_TEXTAREA

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_ENV = "DEMUR_REQUIRE_BROWSER"
EDITED = "Paris.\nChecked against the passage by a person."
STEP_TIMEOUT_MS = 20_000

pytestmark = pytest.mark.browser


def _missing(reason: str) -> None:
    # CI sets DEMUR_REQUIRE_BROWSER=1: there a missing browser fails rather than skips.
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


def _need_browser() -> Any:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        _missing(
            "the browser test needs Debian's chromium at /usr/bin/chromium: "
            "apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the browser test needs Playwright: pip install playwright")
    return sync_playwright


def _router(queue: SqliteQueue) -> Router:
    return Router(
        [
            Scripted("weak", [Reply.confident(XSS_SCRIPT, 0.2)]),
            Scripted("strong", [Reply.confident(f"Paris {XSS_IMG} {XSS_ATTRIBUTE}", 0.3)]),
        ],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Escalate("strong"), AskHuman(priority=2)]),
        queue=queue,
        tracer_provider=TracerProvider(),
    )


def test_a_reviewer_answers_in_chromium_and_the_waiting_route_gets_it(tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    db = tmp_path / "queue.db"
    router = _router(SqliteQueue(db))
    pending = router.route(
        Query(f"What is the capital of France? {XSS_ATTRIBUTE}", context=(XSS_TEXTAREA,))
    )
    router.close()
    assert pending.status == "pending" and pending.ticket_id is not None
    ticket_id = pending.ticket_id

    # The route's caller waits in a thread, on its own connection to the queue.
    waited: dict[str, Verdict | BaseException] = {}

    def wait() -> None:
        try:
            waited["verdict"] = wait_verdict(SqliteQueue(db), pending, timeout_s=120, poll_s=0.1)
        except BaseException as exc:
            waited["verdict"] = exc

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()

    settings = ReviewSettings(tokens={ANA: "ana"}, tokens_env=None)
    app = create_review_app(SqliteQueue(db), settings, owns_queue=True)
    dialogs: list[str] = []
    console: list[str] = []
    with ReviewServer(app) as server, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            context.set_default_timeout(STEP_TIMEOUT_MS)
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("console", lambda message: console.append(message.text))

            def untouched() -> None:
                """None of the injected markup became an element, and none of it ran."""
                assert page.evaluate("window.__pwned") is None
                assert page.locator("script").count() == 0
                assert page.locator("img").count() == 0
                assert page.locator("[onfocus], [onerror]").count() == 0

            # Sign in: the queue sends the browser to the sign-in page first.
            first = page.goto(server.url + "/")
            assert first is not None and page.url == server.url + "/login"
            csp = first.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            page.fill("#token", ANA)
            page.click("#login")
            page.wait_for_url(server.url + "/")
            assert page.locator("#reviewer").inner_text() == "ana"

            # The queue lists the ticket; its question's attribute injection stays text.
            row = page.locator("#queue a.open")
            assert row.count() == 1
            assert XSS_ATTRIBUTE.strip() in row.inner_text()
            untouched()
            row.click()
            page.wait_for_url(f"{server.url}/tickets/{ticket_id}")

            # The ticket: question, context, both candidates with scores, as plain text.
            assert page.locator("#ticket-id").inner_text() == ticket_id
            assert page.locator("#trace-id").inner_text() == pending.trace_id
            assert XSS_ATTRIBUTE.strip() in page.locator("#question").inner_text()
            assert page.locator("#context .passage").inner_text() == XSS_TEXTAREA
            assert page.locator("#candidate-0 .answer").inner_text() == XSS_SCRIPT
            assert XSS_IMG in page.locator("#candidate-1 .answer").inner_text()
            assert "mean_logprob" in page.locator("#candidate-1 .scores").inner_text()
            untouched()

            # Claim it, correct the most confident answer, resolve.
            page.click("#claim")
            page.wait_for_selector("#edit-text")
            assert XSS_IMG in page.locator("#edit-text").input_value()
            untouched()
            page.fill("#edit-text", EDITED)
            page.fill("#edit-form input[name=note]", "the passage says Paris")
            page.click("#edit-submit")
            page.wait_for_url(f"{server.url}/?resolved={ticket_id}")
            assert f"Ticket {ticket_id} resolved." in page.locator(".notice").inner_text()
            assert page.locator("#empty").count() == 1

            # An attribute injection in the filter box stays inside the box's value.
            page.goto(f"{server.url}/?q={quote(XSS_ATTRIBUTE)}")
            assert page.locator("#q").input_value() == XSS_ATTRIBUTE.strip()
            untouched()
        finally:
            context.close()

    waiter.join(30)
    final = waited.get("verdict")
    assert isinstance(final, Verdict), final
    assert (final.status, final.answer, final.model) == ("answered", EDITED, "human")
    assert final.ticket_id == ticket_id and final.trace_id == pending.trace_id
    assert "reviewer 'ana'" in (final.message or "")
    assert dialogs == []
    # Chromium reports any inline script the policy blocked: none reached the page at all.
    assert not [line for line in console if "Content Security Policy" in line], console

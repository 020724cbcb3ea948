"""The router's side: a pending verdict at once, then awaiting, callbacks, webhooks, traces."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import Abstain, AskHuman, Escalate, Ladder, MeanTokenLogprob, Query, Reply, Router
from demur import ScriptedModel as Scripted
from demur.errors import ConfigError, QueueError
from demur.queue import (
    InvalidSignature,
    Resolution,
    ResolutionWatcher,
    TicketRequest,
    Webhook,
    await_verdict,
    sign_webhook,
    verdict_from_ticket,
    verify_webhook,
    wait_verdict,
)
from demur.types import Accept, Verdict


def make_router(queue, tracer_provider=None) -> Router:
    return Router(
        [
            Scripted("weak", [Reply.confident("Lyon", 0.2)]),
            Scripted("strong", [Reply.confident("Paris", 0.3)]),
        ],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Escalate("strong"), AskHuman(priority=3)]),
        queue=queue,
        tracer_provider=tracer_provider,
    )


def ask(router: Router, **metadata) -> Verdict:
    return router.route(
        Query("Capital of France?", context=("France's capital is Paris.",), metadata=metadata)
    )


def resolve_later(queue, ticket_id: str, resolution: Resolution, delay_s: float = 0.2):
    def work() -> None:
        time.sleep(delay_s)
        claim = queue.claim("ana", ticket_id=ticket_id)
        queue.resolve(ticket_id, claim.token, resolution, note="checked")

    thread = threading.Thread(target=work)
    thread.start()
    return thread


# --- the pending verdict ---------------------------------------------------------------------


def test_asking_a_human_returns_a_pending_verdict_with_a_full_ticket(store):
    queue = store.open()
    started = time.perf_counter()
    verdict = ask(make_router(queue))
    assert time.perf_counter() - started < 5  # it does not wait for anyone
    assert verdict.status == "pending" and verdict.ticket_id is not None
    ticket = queue.get(verdict.ticket_id)
    assert ticket.status == "pending" and ticket.priority == 3
    assert [(c.model, c.text) for c in ticket.candidates] == [("weak", "Lyon"), ("strong", "Paris")]
    score = ticket.candidates[1].details[0]
    assert (score.estimator, score.status) == ("mean_logprob", "ok")
    assert score.confidence == pytest.approx(0.3) and score.value is not None
    assert "threshold" in ticket.reason


def test_a_retried_route_with_the_same_key_makes_one_ticket(store):
    queue = store.open()
    router = make_router(queue)
    first = ask(router, idempotency_key="order-17")
    second = ask(router, idempotency_key="order-17")
    third = ask(router)
    assert first.ticket_id == second.ticket_id != third.ticket_id
    assert queue.stats().total == 2


# --- awaiting the resolution -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_wait_returns_the_reviewers_answer(store):
    queue = store.open()
    pending = ask(make_router(queue))
    worker = resolve_later(queue, pending.ticket_id, Resolution.answer("Paris, France"))
    final = wait_verdict(queue, pending, timeout_s=10, poll_s=0.05)
    worker.join(10)
    assert (final.status, final.answer, final.model) == ("answered", "Paris, France", "human")
    assert final.ticket_id == pending.ticket_id and final.trace_id == pending.trace_id
    assert final.steps == pending.steps
    assert final.latency_s >= pending.latency_s + 0.15
    assert "reviewer 'ana'" in (final.message or "")


@pytest.mark.timeout(30)
def test_an_approval_answers_with_the_candidates_model(store):
    queue = store.open()
    pending = ask(make_router(queue))
    resolve_later(queue, pending.ticket_id, Resolution.approve(1), delay_s=0).join(10)
    final = wait_verdict(queue, pending, timeout_s=1)
    assert (final.status, final.answer, final.model) == ("answered", "Paris", "strong")


@pytest.mark.timeout(30)
def test_a_rejection_or_a_cancellation_abstains(store):
    queue = store.open()
    router = make_router(queue)
    rejected = ask(router)
    resolve_later(queue, rejected.ticket_id, Resolution.reject(), delay_s=0).join(10)
    final = wait_verdict(queue, rejected, timeout_s=1)
    assert (final.status, final.answer, final.message) == ("abstained", None, "checked")
    cancelled = ask(router)
    queue.cancel(cancelled.ticket_id, reason="duplicate question")
    final = wait_verdict(queue, cancelled.ticket_id, timeout_s=1)
    assert (final.status, final.message) == ("abstained", "duplicate question")


@pytest.mark.timeout(30)
def test_on_timeout_the_fallback_decides(store):
    queue = store.open()
    pending = ask(make_router(queue))
    started = time.monotonic()
    abstained = wait_verdict(
        queue, pending, timeout_s=0.3, poll_s=0.05, fallback=Abstain("Ask the help desk.")
    )
    assert 0.3 <= time.monotonic() - started < 3
    assert (abstained.status, abstained.message) == ("abstained", "Ask the help desk.")
    assert abstained.ticket_id == pending.ticket_id
    default = wait_verdict(queue, pending, timeout_s=0)
    assert default.status == "abstained" and "No reviewer answered within 0s" in default.message
    accepted = wait_verdict(queue, pending, timeout_s=0, fallback=Accept())
    assert (accepted.status, accepted.answer, accepted.model) == ("answered", "Paris", "strong")
    first = wait_verdict(queue, pending, timeout_s=0, fallback=Accept(step=0))
    assert (first.answer, first.model) == ("Lyon", "weak")
    still = wait_verdict(queue, pending, timeout_s=0, fallback=None)
    assert still.status == "pending"
    assert queue.get(pending.ticket_id).status == "pending"  # the ticket waits on
    wait_verdict(queue, pending, timeout_s=0, cancel_on_timeout=True)
    assert queue.get(pending.ticket_id).status == "cancelled"


@pytest.mark.timeout(30)
def test_a_resolution_that_beats_the_cancel_wins(store):
    queue = store.open()
    pending = ask(make_router(queue))

    class Racing:
        """The reviewer resolves just as the waiter gives up and cancels."""

        def __getattr__(self, name):
            return getattr(queue, name)

        def cancel(self, ticket_id, *, reason=None):
            claim = queue.claim("ana", ticket_id=ticket_id)
            queue.resolve(ticket_id, claim.token, Resolution.answer("Paris"))
            return queue.cancel(ticket_id, reason=reason)

    final = wait_verdict(Racing(), pending, timeout_s=0, cancel_on_timeout=True)
    assert (final.status, final.answer) == ("answered", "Paris")
    assert queue.get(pending.ticket_id).status == "resolved"


@pytest.mark.timeout(30)
async def test_await_keeps_the_event_loop_free(store):
    queue = store.open()
    pending = await make_router(queue).aroute(Query("Capital of France?"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    worker = resolve_later(queue, pending.ticket_id, Resolution.approve(0), delay_s=0.3)
    final = await await_verdict(queue, pending, timeout_s=10, poll_s=0.05)
    task.cancel()
    worker.join(10)
    assert (final.status, final.answer) == ("answered", "Lyon")
    assert ticks >= 10
    another = await make_router(queue).aroute(Query("Capital of Peru?"))
    timed_out = await await_verdict(queue, another, timeout_s=0.1, poll_s=0.02)
    assert timed_out.status == "abstained"


def test_waiting_needs_a_pending_verdict_and_sane_timing(store):
    queue = store.open()
    with pytest.raises(QueueError, match="only a pending verdict"):
        wait_verdict(queue, Verdict(status="answered", answer="x"), timeout_s=1)
    with pytest.raises(ConfigError, match="timeout_s must be >= 0"):
        wait_verdict(queue, "id", timeout_s=-1)
    with pytest.raises(ConfigError, match="poll_s must be > 0"):
        wait_verdict(queue, "id", timeout_s=1, poll_s=0)


def test_an_open_ticket_gives_no_verdict_yet(queue):
    assert verdict_from_ticket(queue.enqueue(TicketRequest(question="Q?"))) is None


# --- callbacks -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_callbacks_fire_once_per_closed_ticket(store):
    queue = store.open()
    before = queue.enqueue(TicketRequest(question="closed before anyone watched"))
    claim = queue.claim("ana")
    queue.resolve(before.id, claim.token, Resolution.answer("old"))
    watcher = ResolutionWatcher(queue, poll_s=0.05)
    watched = queue.enqueue(TicketRequest(question="watched"))
    other = queue.enqueue(TicketRequest(question="other"))
    mine, everything = [], []
    watcher.on_resolved(mine.append, ticket_id=watched.id)
    watcher.on_resolved(lambda t: everything.append(t.id))
    late = []
    watcher.on_resolved(late.append, ticket_id=before.id)  # already closed: told at once
    assert watcher.poll() == [queue.get(before.id)]
    assert [t.id for t in late] == [before.id] and everything == [before.id]
    for ticket in (watched, other):
        c = queue.claim("bo", ticket_id=ticket.id)
        queue.resolve(ticket.id, c.token, Resolution.answer("new"))
    assert {t.id for t in watcher.poll()} == {watched.id, other.id}
    assert [t.id for t in mine] == [watched.id] and mine[0].answer == "new"
    assert sorted(everything) == sorted([before.id, watched.id, other.id])
    assert watcher.poll() == []  # nothing twice
    assert len(everything) == 3


@pytest.mark.timeout(30)
def test_the_watcher_thread_reports_resolutions_and_survives_a_bad_callback(store):
    queue = store.open()
    pending = ask(make_router(queue))
    got = threading.Event()
    seen = []

    def broken(ticket):
        raise RuntimeError("boom")

    with ResolutionWatcher(queue, poll_s=0.05) as watcher:
        watcher.on_resolved(broken)
        watcher.on_resolved(lambda t: (seen.append(t), got.set()), ticket_id=pending.ticket_id)
        resolve_later(queue, pending.ticket_id, Resolution.approve(1), delay_s=0.1).join(10)
        assert got.wait(10)
    assert seen[0].answer == "Paris" and watcher.failures == 1


@pytest.mark.timeout(30)
def test_a_watcher_pages_through_many_resolutions(store, clock):
    queue = store.open(clock=clock)
    watcher = ResolutionWatcher(queue, since=clock.now, page=7)
    for i in range(20):
        queue.enqueue(TicketRequest(question=f"q{i}"))
    while (claim := queue.claim("ana")) is not None:
        clock.advance(0.001)
        queue.resolve(claim.ticket.id, claim.token, Resolution.reject())
    assert len(watcher.poll()) == 20
    assert watcher.poll() == []


# --- webhooks --------------------------------------------------------------------------------


class Receiver(http.server.BaseHTTPRequestHandler):
    deliveries: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
        else:
            Receiver.deliveries.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.deliveries, Receiver.fail_first = [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/demur"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.timeout(60)
def test_webhooks_are_signed_and_retried(store, receiver):
    queue = store.open()
    pending = ask(make_router(queue))
    Receiver.fail_first = 2  # two 503s, then accepted
    hook = Webhook(receiver, "s3cret", backoff_s=0.01, timeout_s=5)
    watcher = ResolutionWatcher(queue, webhooks=[hook])
    resolve_later(queue, pending.ticket_id, Resolution.edit("Paris.", candidate=1), 0).join(10)
    watcher.poll()
    assert len(Receiver.deliveries) == 1 and watcher.failures == 0
    headers, body = Receiver.deliveries[0]
    verify_webhook(body, headers["X-Demur-Signature"], "s3cret")
    document = json.loads(body)
    assert document["event"] == "ticket.resolved"
    assert document["delivery"] == headers["X-Demur-Delivery"] == f"{pending.ticket_id}:resolved"
    assert document["ticket"]["id"] == pending.ticket_id
    assert document["ticket"]["resolution"] == "edit"
    assert document["verdict"] == {"status": "answered", "answer": "Paris.", "message": ANY_TEXT}
    assert document["ticket"]["trace_id"] == pending.trace_id
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_webhook(body, headers["X-Demur-Signature"], "another secret")
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_webhook(body.replace(b"Paris.", b"Lyon!."), headers["X-Demur-Signature"], "s3cret")


@pytest.mark.timeout(60)
def test_a_webhook_that_keeps_failing_is_counted_not_fatal(store, receiver):
    queue = store.open()
    Receiver.fail_first = 10
    watcher = ResolutionWatcher(queue, webhooks=[Webhook(receiver, "k", attempts=2, backoff_s=0)])
    ticket = queue.enqueue(TicketRequest(question="Q?"))
    queue.cancel(ticket.id)
    assert [t.id for t in watcher.poll()] == [ticket.id]
    assert watcher.failures == 1 and Receiver.deliveries == []


class _AnyText:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


ANY_TEXT = _AnyText()


def test_signatures_expire_and_must_be_well_formed():
    body = b'{"event":"ticket.resolved"}'
    now = 1_900_000_000
    header = sign_webhook(body, "k", timestamp=now)
    verify_webhook(body, header, "k", now=now + 299)
    verify_webhook(body, header, b"k", now=now)
    with pytest.raises(InvalidSignature, match="301s old, outside the 300s tolerance"):
        verify_webhook(body, header, "k", now=now + 301)
    with pytest.raises(InvalidSignature, match="no X-Demur-Signature header"):
        verify_webhook(body, None, "k")
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_webhook(body, "v1=abc", "k")
    # A receiver may list several signatures (e.g. while rotating secrets).
    other = sign_webhook(body, "old", timestamp=now).split(",")[1]
    verify_webhook(body, f"{header},{other}", "old", now=now)


def test_webhook_settings_are_checked():
    with pytest.raises(ConfigError, match="must start with http"):
        Webhook("ftp://example.org", "k")
    with pytest.raises(ConfigError, match="non-empty secret"):
        Webhook("https://example.org", "")
    assert "s3cret" not in repr(Webhook("https://example.org", "s3cret"))


# --- tracing ---------------------------------------------------------------------------------


def test_the_resolution_is_traced_under_the_routes_trace(store):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    queue = store.open(tracer_provider=provider)
    pending = ask(make_router(queue, tracer_provider=provider))
    route = next(s for s in exporter.get_finished_spans() if s.name == "demur.route")
    claim = queue.claim("ana")
    queue.resolve(pending.ticket_id, claim.token, Resolution.approve(1))
    review = next(s for s in exporter.get_finished_spans() if s.name == "demur.review")
    assert format(review.context.trace_id, "032x") == pending.trace_id
    assert review.parent is not None and review.parent.span_id == route.context.span_id
    assert review.attributes["demur.ticket_id"] == pending.ticket_id
    assert review.attributes["demur.review.resolution"] == "approve"
    assert review.attributes["demur.review.reviewer"] == "ana"
    assert review.attributes["demur.review.approved"] == 1
    assert review.start_time <= review.end_time
    # A ticket without a trace (enqueued by hand) makes no span.
    exporter.clear()
    loose = queue.enqueue(TicketRequest(question="Q?"))
    queue.cancel(loose.id)
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_a_deadline_in_the_past_still_enqueues_and_counts_as_overdue(queue):
    queue.enqueue(TicketRequest(question="Q?", deadline=datetime.now(UTC) - timedelta(hours=1)))
    assert queue.stats().overdue == 1

"""The review-queue contract: every backend (SQLite, PostgreSQL) must pass every test here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from demur.errors import QueueError
from demur.queue import (
    CandidateAnswer,
    InvalidPayload,
    InvalidTransition,
    LeaseExpired,
    PayloadLimits,
    Resolution,
    TicketNotFound,
    TicketRequest,
)
from demur.types import Score


def request(
    question: str = "Capital of France?",
    *,
    priority: int = 0,
    key: str | None = None,
    deadline: datetime | None = None,
    candidates: int = 2,
) -> TicketRequest:
    texts = ["Lyon", "Paris", "Marseille", "Nice"]
    return TicketRequest(
        question=question,
        context=("France's capital is Paris.",),
        candidates=tuple(
            CandidateAnswer(
                model=f"m{i}",
                text=texts[i],
                confidence=0.2 + 0.1 * i,
                scores={"mean_logprob": 0.2 + 0.1 * i},
                details=(
                    Score(estimator="mean_logprob", value=-1.5 + i, confidence=0.2 + 0.1 * i),
                    Score(estimator="verbal", status="failed", detail="no number in reply"),
                ),
            )
            for i in range(candidates)
        ),
        reason="confidence 0.3 < threshold 0.6",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        priority=priority,
        deadline=deadline,
        idempotency_key=key,
        metadata={"tenant": "acme", "tags": ["geo"]},
    )


# --- enqueue and read back -------------------------------------------------------------------


def test_a_ticket_keeps_everything_it_was_given(queue):
    deadline = datetime(2031, 5, 1, 9, 30, tzinfo=UTC)
    sent = request(key="route-1", deadline=deadline, priority=3)
    ticket = queue.enqueue(sent)
    stored = queue.get(ticket.id)
    assert stored == ticket
    assert stored.status == "pending" and stored.is_open
    assert stored.model_dump(include=set(TicketRequest.model_fields)) == sent.model_dump()
    assert stored.candidates[1].details[0].value == pytest.approx(-0.5)
    assert stored.candidates[0].details[1].status == "failed"
    assert stored.created_at.tzinfo is not None
    assert (stored.claims, stored.resolution, stored.answer) == (0, None, None)


def test_text_is_stored_verbatim(queue):
    odd = "<script>alert(1)</script> 'quoted' \"double\" %_\\ — 東京 🚀 مرحبا \u200b"
    ticket = queue.enqueue(
        TicketRequest(question=odd, candidates=(CandidateAnswer(model="m", text=odd),))
    )
    stored = queue.get(ticket.id)
    assert stored.question == odd and stored.candidates[0].text == odd


def test_enqueue_accepts_a_mapping_and_explains_a_bad_one(queue):
    ticket = queue.enqueue({"question": "Q?", "priority": 2})
    assert queue.get(ticket.id).priority == 2
    with pytest.raises(InvalidPayload, match=r"priority: Input should be a valid integer"):
        queue.enqueue({"question": "Q?", "priority": "high"})
    with pytest.raises(InvalidPayload, match="question"):
        queue.enqueue({"question": "   "})
    with pytest.raises(InvalidPayload, match="deadline"):
        queue.enqueue({"question": "Q?", "deadline": "2030-01-01T00:00:00"})  # no time zone
    with pytest.raises(InvalidPayload, match="a ticket must be a TicketRequest or a mapping"):
        queue.enqueue("Q?")
    assert queue.stats().total == 1


def test_the_same_idempotency_key_makes_one_ticket(queue):
    first = queue.enqueue(request(key="route-42"))
    again = queue.enqueue(request("a retry, with other text", key="route-42"))
    other = queue.enqueue(request(key="route-43"))
    unkeyed = [queue.enqueue(request()) for _ in range(2)]
    assert again.id == first.id and again.question == first.question
    assert len({first.id, other.id, *(t.id for t in unkeyed)}) == 4
    assert queue.stats().total == 4


def test_the_key_still_dedupes_after_the_ticket_is_resolved(queue):
    first = queue.enqueue(request(key="k"))
    claim = queue.claim("ana")
    queue.resolve(first.id, claim.token, Resolution.approve(1))
    again = queue.enqueue(request(key="k"))
    assert again.id == first.id and again.status == "resolved"


def test_unknown_ids_are_ticket_not_found(queue):
    with pytest.raises(TicketNotFound, match="no ticket with id 'nope'") as caught:
        queue.get("nope")
    assert isinstance(caught.value, QueueError)
    for call in (
        lambda: queue.claim("ana", ticket_id="nope"),
        lambda: queue.resolve("nope", "token", Resolution.reject()),
        lambda: queue.release("nope", "token"),
        lambda: queue.renew("nope", "token"),
        lambda: queue.cancel("nope"),
    ):
        with pytest.raises(TicketNotFound):
            call()


def test_tickets_survive_reopening(store):
    ticket = store.open().enqueue(request(key="k"))
    reopened = store.open()
    assert reopened.get(ticket.id).question == "Capital of France?"
    assert reopened.enqueue(request(key="k")).id == ticket.id


# --- claims ----------------------------------------------------------------------------------


def test_claims_follow_priority_then_deadline_then_age(queue):
    soon = datetime(2030, 1, 2, tzinfo=UTC)
    later = datetime(2030, 1, 3, tzinfo=UTC)
    low = queue.enqueue(request("low", priority=0))
    late = queue.enqueue(request("high, late deadline", priority=5, deadline=later))
    plain = queue.enqueue(request("high, no deadline", priority=5))
    urgent = queue.enqueue(request("high, soon", priority=5, deadline=soon))
    low2 = queue.enqueue(request("low again", priority=0))
    assert [t.id for t in queue.pending()] == [urgent.id, late.id, plain.id, low.id, low2.id]
    claimed = [queue.claim("ana").ticket.id for _ in range(5)]
    assert claimed == [urgent.id, late.id, plain.id, low.id, low2.id]
    assert queue.claim("ana") is None


def test_a_claim_is_a_lease(queue):
    ticket = queue.enqueue(request())
    claim = queue.claim("ana", lease_s=60)
    assert claim.ticket.id == ticket.id and claim.ticket.status == "claimed"
    assert claim.ticket.claimed_by == "ana" and claim.ticket.claims == 1
    assert claim.expires_at == claim.ticket.lease_expires_at
    assert (
        timedelta(seconds=59) < claim.expires_at - claim.ticket.claimed_at <= timedelta(seconds=60)
    )
    assert queue.get(ticket.id).status == "claimed"
    assert queue.claim("bo") is None  # nothing else waiting
    assert len(claim.token) >= 32


def test_claiming_a_given_ticket(queue):
    first, second = queue.enqueue(request("one")), queue.enqueue(request("two"))
    claim = queue.claim("ana", ticket_id=second.id)
    assert claim.ticket.id == second.id
    with pytest.raises(InvalidTransition, match="claimed by 'ana' until") as caught:
        queue.claim("bo", ticket_id=second.id)
    assert not isinstance(caught.value, LeaseExpired)
    queue.resolve(second.id, claim.token, Resolution.answer("two"))
    with pytest.raises(InvalidTransition, match="already resolved .*cannot be claimed"):
        queue.claim("bo", ticket_id=second.id)
    assert queue.claim("bo").ticket.id == first.id


def test_an_expired_lease_returns_the_ticket_to_the_queue(store, clock):
    queue = store.open(clock=clock, lease_s=30)
    ticket = queue.enqueue(request())
    stale = queue.claim("ana")
    clock.advance(29)
    assert queue.get(ticket.id).status == "claimed"
    assert queue.claim("bo") is None
    clock.advance(2)
    seen = queue.get(ticket.id)
    assert (seen.status, seen.claimed_by, seen.lease_expires_at) == ("pending", None, None)
    assert [t.id for t in queue.tickets(status="pending")] == [ticket.id]
    assert queue.tickets(status="claimed") == []
    # The lease ran out, but nobody took the ticket yet: resolving is still refused.
    with pytest.raises(LeaseExpired, match="your lease on ticket .* expired at"):
        queue.resolve(ticket.id, stale.token, Resolution.answer("Paris"))
    with pytest.raises(LeaseExpired, match="expired"):
        queue.renew(ticket.id, stale.token)
    fresh = queue.claim("bo")
    assert fresh.ticket.id == ticket.id and fresh.ticket.claims == 2
    # Now bo holds it: ana's old token is worthless for every operation.
    with pytest.raises(LeaseExpired, match="claimed by 'bo' until .* not theirs"):
        queue.resolve(ticket.id, stale.token, Resolution.answer("Lyon"))
    with pytest.raises(LeaseExpired):
        queue.release(ticket.id, stale.token)
    with pytest.raises(LeaseExpired):
        queue.renew(ticket.id, stale.token)
    done = queue.resolve(ticket.id, fresh.token, Resolution.answer("Paris"))
    assert (done.status, done.reviewer, done.answer) == ("resolved", "bo", "Paris")


def test_expired_claims_and_pending_tickets_share_one_queue_order(store, clock):
    queue = store.open(clock=clock, lease_s=30)
    urgent = queue.enqueue(request("urgent", priority=5))
    plain = queue.enqueue(request("plain", priority=0))
    assert [queue.claim("ana").ticket.id for _ in range(2)] == [urgent.id, plain.id]
    clock.advance(31)  # both of ana's leases lapse
    later = queue.enqueue(request("later, urgent too", priority=5))
    # A lapsed claim goes where its ticket would if pending: by priority, then age.
    assert [queue.claim("bo").ticket.id for _ in range(3)] == [urgent.id, later.id, plain.id]
    assert queue.claim("bo") is None


def test_renew_extends_a_live_lease(store, clock):
    queue = store.open(clock=clock, lease_s=30)
    ticket = queue.enqueue(request())
    claim = queue.claim("ana")
    clock.advance(20)
    renewed = queue.renew(ticket.id, claim.token, lease_s=60)
    assert renewed.token == claim.token
    assert renewed.expires_at == clock.now + timedelta(seconds=60)
    clock.advance(50)  # past the first lease, inside the renewed one
    assert queue.resolve(ticket.id, claim.token, Resolution.reject()).status == "resolved"


def test_the_same_reviewer_claiming_again_continues_their_claim(store, clock):
    queue = store.open(clock=clock, lease_s=30)
    ticket = queue.enqueue(request())
    claim = queue.claim("ana", ticket_id=ticket.id)
    clock.advance(20)
    again = queue.claim("ana", ticket_id=ticket.id)  # e.g. signed in again: the token was lost
    assert again.token == claim.token
    assert again.expires_at == clock.now + timedelta(seconds=30) > claim.expires_at
    assert (again.ticket.claims, again.ticket.claimed_at) == (1, claim.ticket.claimed_at)
    with pytest.raises(InvalidTransition, match="claimed by 'ana' until"):
        queue.claim("bo", ticket_id=ticket.id)  # anyone else is still locked out
    assert queue.claim("ana") is None  # the next-ticket claim never hands back one's own
    clock.advance(25)  # past the first lease, inside the continued one
    assert queue.resolve(ticket.id, claim.token, Resolution.reject()).status == "resolved"


def test_a_lapsed_claim_is_claimed_afresh_not_continued(store, clock):
    queue = store.open(clock=clock, lease_s=30)
    ticket = queue.enqueue(request())
    stale = queue.claim("ana", ticket_id=ticket.id)
    clock.advance(31)
    fresh = queue.claim("ana", ticket_id=ticket.id)
    assert fresh.token != stale.token and fresh.ticket.claims == 2
    with pytest.raises(LeaseExpired):
        queue.resolve(ticket.id, stale.token, Resolution.reject())


def test_release_returns_a_claimed_ticket(queue):
    ticket = queue.enqueue(request())
    claim = queue.claim("ana")
    released = queue.release(ticket.id, claim.token)
    assert (released.status, released.claimed_by, released.lease_expires_at) == (
        "pending",
        None,
        None,
    )
    with pytest.raises(InvalidTransition, match="pending: nobody holds a lease"):
        queue.release(ticket.id, claim.token)
    with pytest.raises(InvalidTransition, match="claim it first"):
        queue.resolve(ticket.id, claim.token, Resolution.approve(0))
    again = queue.claim("bo")
    assert again.ticket.id == ticket.id and again.ticket.claims == 2
    assert again.token != claim.token


def test_bad_lease_lengths_are_refused(store):
    with pytest.raises(InvalidPayload, match="lease must last > 0 seconds"):
        store.open(lease_s=0)
    with pytest.raises(
        InvalidPayload, match=r"lease of 1e\+12 seconds is over the limit of 604800"
    ):
        store.open(lease_s=1e12)
    queue = store.open()
    ticket = queue.enqueue(request())
    with pytest.raises(InvalidPayload, match="lease must last"):
        queue.claim("ana", lease_s=float("nan"))
    with pytest.raises(InvalidPayload, match="lease must last > 0 seconds, got 0"):
        queue.claim("ana", lease_s=0)
    with pytest.raises(InvalidPayload, match="over the limit of 604800"):
        queue.claim("ana", lease_s=1e12)
    claim = queue.claim("ana", lease_s=7 * 24 * 3600)
    with pytest.raises(InvalidPayload, match="over the limit of 604800"):
        queue.renew(ticket.id, claim.token, lease_s=float(2**70))
    assert queue.get(ticket.id).lease_expires_at == claim.expires_at


# --- resolutions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "answer", "approved"),
    [
        (Resolution.approve(1), "Paris", 1),
        (Resolution.edit("Paris, France", candidate=1), "Paris, France", 1),
        (Resolution.answer("It is Paris."), "It is Paris.", None),
        (Resolution.reject(), None, None),
    ],
)
def test_each_kind_of_resolution(queue, resolution, answer, approved):
    ticket = queue.enqueue(request())
    claim = queue.claim("ana")
    done = queue.resolve(ticket.id, claim.token, resolution, note="checked the atlas")
    assert done.status == "resolved" and not done.is_open
    assert (done.resolution, done.answer, done.approved) == (resolution.kind, answer, approved)
    assert (done.reviewer, done.note) == ("ana", "checked the atlas")
    assert done.resolved_at is not None and done.resolved_at >= done.created_at
    assert (done.claimed_by, done.lease_expires_at) == (None, None)
    assert queue.get(ticket.id) == done


def test_the_reviewer_can_differ_from_the_claimant(queue):
    ticket = queue.enqueue(request())
    claim = queue.claim("triage-bot")
    done = queue.resolve(ticket.id, claim.token, Resolution.approve(0), reviewer="ana")
    assert done.reviewer == "ana"


def test_invalid_transitions_are_clear_errors_and_change_nothing(queue):
    ticket = queue.enqueue(request())
    with pytest.raises(InvalidTransition, match="is pending.*claim it first"):
        queue.resolve(ticket.id, "made-up", Resolution.answer("Paris"))
    claim = queue.claim("ana")
    with pytest.raises(LeaseExpired, match="not theirs"):
        queue.resolve(ticket.id, "someone-else", Resolution.answer("Paris"))
    assert queue.get(ticket.id).status == "claimed"
    queue.resolve(ticket.id, claim.token, Resolution.answer("Paris"))
    before = queue.get(ticket.id)
    with pytest.raises(InvalidTransition, match="already resolved \\(answer by 'ana'"):
        queue.resolve(ticket.id, claim.token, Resolution.answer("Lyon"))
    with pytest.raises(InvalidTransition, match="already resolved"):
        queue.release(ticket.id, claim.token)
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        queue.cancel(ticket.id)
    assert queue.get(ticket.id) == before


def test_malformed_resolutions_are_refused_before_anything_changes(queue):
    ticket = queue.enqueue(request(candidates=2))
    claim = queue.claim("ana")
    with pytest.raises(InvalidPayload, match="candidate 5 does not exist"):
        queue.resolve(ticket.id, claim.token, Resolution.approve(5))
    with pytest.raises(InvalidPayload, match="approve needs the candidate's index"):
        queue.resolve(ticket.id, claim.token, Resolution(kind="approve"))
    with pytest.raises(InvalidPayload, match="edit needs a non-empty answer"):
        queue.resolve(ticket.id, claim.token, Resolution.edit("  "))
    with pytest.raises(InvalidPayload, match="answer needs a non-empty answer"):
        queue.resolve(ticket.id, claim.token, Resolution(kind="answer"))
    with pytest.raises(InvalidPayload, match="reject carries no answer"):
        queue.resolve(ticket.id, claim.token, Resolution(kind="reject", text="x"))
    with pytest.raises(InvalidPayload, match="reviewer is blank"):
        queue.resolve(ticket.id, claim.token, Resolution.reject(), reviewer=" ")
    assert queue.get(ticket.id).status == "claimed"
    empty = queue.enqueue(request("no candidates", candidates=0))
    claim2 = queue.claim("ana", ticket_id=empty.id)
    with pytest.raises(InvalidPayload, match="no candidate answer; use Resolution.answer"):
        queue.resolve(empty.id, claim2.token, Resolution.approve(0))


def test_cancel_withdraws_open_tickets(queue):
    waiting = queue.enqueue(request("waiting"))
    held = queue.enqueue(request("held"))
    claim = queue.claim("ana", ticket_id=held.id)
    gone = queue.cancel(waiting.id, reason="the user left")
    assert (gone.status, gone.note, gone.answer) == ("cancelled", "the user left", None)
    assert gone.resolved_at is not None
    assert queue.cancel(held.id).status == "cancelled"
    with pytest.raises(InvalidTransition, match="was cancelled at .*cannot be resolved"):
        queue.resolve(held.id, claim.token, Resolution.answer("Paris"))
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        queue.cancel(held.id)
    with pytest.raises(InvalidTransition, match="cannot be claimed"):
        queue.claim("bo", ticket_id=waiting.id)
    assert queue.claim("bo") is None


# --- listing and stats -----------------------------------------------------------------------


def test_tickets_filter_by_state_priority_deadline_text_and_people(store, clock):
    queue = store.open(clock=clock, lease_s=60)
    a = queue.enqueue(request("Who wrote Emma?", priority=1))
    b = queue.enqueue(
        request("What is 100% of x_1?", priority=5, deadline=clock.now + timedelta(hours=1))
    )
    c = queue.enqueue(request("Capital of PERU?", priority=9))
    clock.advance(10)
    d = queue.enqueue(request("who painted it?", priority=1))
    claim = queue.claim("ana", ticket_id=c.id)
    queue.resolve(c.id, claim.token, Resolution.answer("Lima"))
    queue.claim("bo", ticket_id=b.id)

    def ids(**filters):
        return [t.id for t in queue.tickets(**filters)]

    assert ids() == [c.id, b.id, a.id, d.id]
    assert ids(status="pending") == [a.id, d.id]
    assert ids(status="claimed") == [b.id]
    assert ids(status=["resolved", "claimed"]) == [c.id, b.id]
    assert ids(min_priority=5) == [c.id, b.id]
    assert ids(max_priority=1) == [a.id, d.id]
    assert ids(due_before=clock.now + timedelta(hours=2)) == [b.id]
    assert ids(text="who") == [a.id, d.id]  # case-insensitive
    assert ids(text="100%") == [b.id]  # % and _ are literal
    assert ids(text="x_1") == [b.id]
    assert ids(text="xx1") == []
    assert ids(text="lima") == [c.id]  # the answer counts too
    assert ids(claimed_by="bo") == [b.id]
    assert ids(reviewer="ana") == [c.id]
    assert ids(created_since=clock.now - timedelta(seconds=1)) == [d.id]
    assert ids(resolved_since=clock.now - timedelta(seconds=1)) == [c.id]
    assert ids(order="newest") == [d.id, c.id, b.id, a.id]
    assert ids(order="oldest", limit=2) == [a.id, b.id]
    assert ids(order="oldest", limit=2, offset=2) == [c.id, d.id]
    clock.advance(61)  # bo's lease runs out
    assert ids(status="pending") == [b.id, a.id, d.id]
    with pytest.raises(InvalidPayload, match="unknown ticket status 'open'"):
        queue.tickets(status="open")


def test_stats(store, clock):
    queue = store.open(clock=clock, lease_s=60)
    empty = queue.stats()
    assert empty.total == 0 and empty.oldest_pending_age_s is None and empty.mean_resolve_s is None
    first = queue.enqueue(request("first", deadline=clock.now + timedelta(minutes=5)))
    clock.advance(30)
    for i in range(4):
        queue.enqueue(request(f"q{i}"))
    for kind in (Resolution.approve(0), Resolution.reject()):
        claim = queue.claim("ana")
        clock.advance(10)
        queue.resolve(claim.ticket.id, claim.token, kind)
    queue.claim("bo")  # q1, live lease
    expiring = queue.claim("cy", lease_s=5)  # q2
    queue.cancel(queue.pending()[0].id)  # q3
    clock.advance(6)
    stats = queue.stats()
    assert stats.counts == {"pending": 1, "claimed": 1, "resolved": 2, "cancelled": 1}
    assert stats.total == 5 and stats.expired_leases == 1
    assert stats.resolutions == {"approve": 1, "reject": 1}
    assert stats.mean_resolve_s == pytest.approx((40 + 20) / 2)
    assert stats.oldest_pending_age_s == pytest.approx(
        (clock.now - queue.get(expiring.ticket.id).created_at).total_seconds()
    )
    assert stats.overdue == 0
    assert queue.get(first.id).status == "resolved"
    late = queue.enqueue(request("late", deadline=clock.now + timedelta(seconds=1)))
    clock.advance(2)
    assert queue.stats().overdue == 1 and late.id


# --- payload limits and encoding -------------------------------------------------------------


def test_oversized_tickets_are_refused_naming_the_field_and_the_limit(queue):
    big = "x" * (33 * 1024)
    with pytest.raises(
        InvalidPayload, match=r"ticket.question is 33 KiB, over the limit of 32 KiB"
    ):
        queue.enqueue(TicketRequest(question=big))
    with pytest.raises(InvalidPayload, match=r"ticket.context is .* over 5 passages"):
        queue.enqueue(TicketRequest(question="Q?", context=("y" * 60_000,) * 5))
    with pytest.raises(InvalidPayload, match=r"ticket.candidates\[1\].text is 65 KiB"):
        queue.enqueue(
            TicketRequest(
                question="Q?",
                candidates=(
                    CandidateAnswer(model="m", text="ok"),
                    CandidateAnswer(model="m", text="z" * 65 * 1024),
                ),
            )
        )
    many = tuple(CandidateAnswer(model="m", text=str(i)) for i in range(33))
    with pytest.raises(InvalidPayload, match="33 answers, over the limit of 32"):
        queue.enqueue(TicketRequest(question="Q?", candidates=many))
    with pytest.raises(InvalidPayload, match="ticket.metadata is"):
        queue.enqueue(TicketRequest(question="Q?", metadata={"blob": "m" * 20_000}))
    with pytest.raises(InvalidPayload, match="ticket.idempotency_key is 300 bytes"):
        queue.enqueue(TicketRequest(question="Q?", idempotency_key="k" * 300))
    assert queue.stats().total == 0


def test_the_whole_body_has_a_limit(store):
    queue = store.open(limits=PayloadLimits(body=4096))
    candidates = tuple(CandidateAnswer(model="m", text="w" * 1000) for _ in range(5))
    with pytest.raises(InvalidPayload, match=r"the ticket is .* KiB as stored, over the limit"):
        queue.enqueue(TicketRequest(question="Q?", candidates=candidates))
    assert queue.enqueue(TicketRequest(question="Q?", candidates=candidates[:2])).id


def test_oversized_resolutions_are_refused(queue):
    ticket = queue.enqueue(request())
    claim = queue.claim("ana")
    with pytest.raises(InvalidPayload, match="answer is 65 KiB, over the limit of 64 KiB"):
        queue.resolve(ticket.id, claim.token, Resolution.answer("a" * 65 * 1024))
    with pytest.raises(InvalidPayload, match="note is 9 KiB"):
        queue.resolve(ticket.id, claim.token, Resolution.reject(), note="n" * 9 * 1024)
    with pytest.raises(InvalidPayload, match="reviewer is 257 bytes"):
        queue.resolve(ticket.id, claim.token, Resolution.reject(), reviewer="r" * 257)
    assert queue.get(ticket.id).status == "claimed"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: TicketRequest(question="bad \ud800 text"), r"ticket\.question"),
        (lambda: TicketRequest(question="Q?", context=("ok", "\udcff")), r"ticket\.context\[1\]"),
        (
            lambda: TicketRequest(
                question="Q?", candidates=(CandidateAnswer(model="m", text="\ud83d"),)
            ),
            r"ticket\.candidates\[0\]\.text",
        ),
        (lambda: TicketRequest(question="Q?", reason="\udc80"), r"ticket\.reason"),
        (lambda: TicketRequest(question="Q?", metadata={"k": "\ud800"}), r"ticket\.metadata\.k"),
    ],
)
def test_text_that_is_not_utf8_is_refused(queue, build, field):
    with pytest.raises(InvalidPayload, match=f"{field} is not valid UTF-8: surrogates not allowed"):
        queue.enqueue(build())
    assert queue.stats().total == 0


def test_bytes_that_do_not_decode_and_nul_characters_are_refused(queue):
    with pytest.raises(InvalidPayload, match="question: .*unicode"):
        queue.enqueue({"question": b"caf\xe9 \xff"})
    with pytest.raises(InvalidPayload, match=r"ticket.question contains a NUL character"):
        queue.enqueue(TicketRequest(question="a\x00b"))
    ticket = queue.enqueue(request())
    claim = queue.claim("ana")
    with pytest.raises(InvalidPayload, match="answer is not valid UTF-8"):
        queue.resolve(ticket.id, claim.token, Resolution.answer("Par\udcc3is"))
    with pytest.raises(InvalidPayload, match="note contains a NUL"):
        queue.resolve(ticket.id, claim.token, Resolution.reject(), note="\x00")
    with pytest.raises(InvalidPayload, match="reviewer is not valid UTF-8"):
        queue.claim("\ud800")
    assert queue.stats().total == 1


# --- numeric ranges and nesting: every backend accepts and refuses the same values -------


@pytest.mark.parametrize("priority", [-(2**31), -1, 0, 2**31 - 1])
def test_priorities_in_the_signed_32_bit_range_are_stored(queue, priority):
    ticket = queue.enqueue(request(priority=priority))
    assert queue.get(ticket.id).priority == priority
    assert [t.id for t in queue.tickets(min_priority=priority, max_priority=priority)] == [
        ticket.id
    ]


@pytest.mark.parametrize(
    ("priority", "shown"),
    [
        (2**31, "2147483648"),
        (-(2**31) - 1, "-2147483649"),
        (2**63, "9223372036854775808"),
        (10**400, r"about 2\*\*1328"),
    ],
)
def test_priorities_outside_it_are_refused_by_every_backend(queue, priority, shown):
    with pytest.raises(
        InvalidPayload,
        match=f"ticket.priority is {shown}, outside the range the queue stores "
        r"\(-2147483648 to 2147483647",
    ):
        queue.enqueue(request(priority=priority))
    with pytest.raises(InvalidPayload, match=f"min_priority is {shown}, outside the range"):
        queue.tickets(min_priority=priority)
    with pytest.raises(InvalidPayload, match="max_priority is"):
        queue.tickets(max_priority=priority)
    assert queue.stats().total == 0


def test_a_malformed_ticket_filter_is_invalid_payload(queue):
    with pytest.raises(InvalidPayload, match="invalid ticket filter: limit"):
        queue.tickets(limit=0)
    with pytest.raises(InvalidPayload, match="invalid ticket filter: order"):
        queue.tickets(order="sideways")


def nested(depth: int, list_every: int = 0) -> dict:
    """Metadata whose mappings (and lists, every `list_every` levels) nest `depth` levels."""
    root: dict = {}
    node: dict | list = root
    for level in range(2, depth + 1):
        child: dict | list = [] if list_every and level % list_every == 0 else {}
        if isinstance(node, dict):
            node["k"] = child
        else:
            node.append(child)
        node = child
    return root


@pytest.mark.parametrize("list_every", [0, 2])
def test_metadata_nested_too_deep_is_refused_not_a_recursion_error(store, list_every):
    queue = store.open()
    for depth in (33, 3_000, 100_000):
        with pytest.raises(InvalidPayload, match="ticket.metadata nests more than 32 levels"):
            queue.enqueue(TicketRequest(question="Q?", metadata=nested(depth, list_every)))
        with pytest.raises(InvalidPayload, match="nests more than 32 levels"):
            queue.enqueue({"question": "Q?", "metadata": nested(depth, list_every)})
    assert queue.stats().total == 0
    at_limit = queue.enqueue(TicketRequest(question="Q?", metadata=nested(32, list_every)))
    assert queue.get(at_limit.id).metadata == nested(32, list_every)
    shallow = store.open(limits=PayloadLimits(depth=2))
    with pytest.raises(InvalidPayload, match="more than 2 levels"):
        shallow.enqueue(TicketRequest(question="Q?", metadata={"a": {"b": [1]}}))
    assert shallow.enqueue(TicketRequest(question="Q?", metadata={"a": {"b": 1}})).id


def test_a_valid_utf8_ticket_at_the_limit_is_accepted(store):
    queue = store.open(limits=PayloadLimits(question=12))
    assert queue.enqueue(TicketRequest(question="東京東京")).question == "東京東京"  # 12 bytes
    with pytest.raises(InvalidPayload, match="13 bytes, over the limit of 12 bytes"):
        queue.enqueue(TicketRequest(question="東京?東京"))

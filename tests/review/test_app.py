"""The reviewer app over HTTP: sign-in, the queue, a ticket, and every action and its errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from demur.queue import QueueUnavailable, Resolution, SqliteQueue, Ticket
from demur.review import ReviewSettings, create_review_app
from demur.review.app import CSP
from tests.review.conftest import (
    ANA,
    BEN,
    TEST_HOSTS,
    XSS_ATTRIBUTE,
    XSS_IMG,
    XSS_SCRIPT,
    XSS_TEXTAREA,
    Clock,
    candidate,
    csrf_of,
    login,
    make_client,
)

Enqueue = Callable[..., Ticket]
Client = tuple[TestClient, str]


class _Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


def assert_inert(html: str) -> None:
    """No script, no element that loads or runs anything, no event-handler attribute."""
    for tag, attrs in elements(html):
        assert tag not in ("script", "img", "iframe", "object", "embed", "svg"), tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "autofocus" not in attrs or tag == "input", (tag, attrs)


def post(client: TestClient, path: str, csrf: str, **fields: str):
    return client.post(path, data={"csrf": csrf, **fields})


# --- signing in ------------------------------------------------------------------------------


def test_pages_need_a_session_and_come_back_after_sign_in(client: TestClient, enqueue: Enqueue):
    ticket = enqueue()
    assert client.get("/").headers["location"] == "/login"
    response = client.get(f"/tickets/{ticket.id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={quote('/tickets/' + ticket.id, safe='')}"
    page = client.get(response.headers["location"])
    signed_in = client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "token": ANA, "next": f"/tickets/{ticket.id}"},
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == f"/tickets/{ticket.id}"
    assert client.get(f"/tickets/{ticket.id}").status_code == 200


def test_a_post_without_a_session_goes_to_sign_in(client: TestClient, enqueue: Enqueue):
    ticket = enqueue()
    response = client.post(f"/tickets/{ticket.id}/claim", data={"csrf": "x"})
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_a_wrong_token_is_refused_and_the_form_says_so(client: TestClient):
    page = client.get("/login")
    response = client.post("/login", data={"csrf": csrf_of(page.text), "token": "nope" * 8})
    assert response.status_code == 401
    assert "That token is not valid." in response.text
    assert "demur_review=" not in response.headers.get("set-cookie", "")
    assert client.get("/").status_code == 303


def test_the_session_cookie_is_signed_httponly_strict_and_not_the_token(client: TestClient):
    page = client.get("/login")
    response = client.post("/login", data={"csrf": csrf_of(page.text), "token": ANA})
    cookie = next(c for c in response.headers.get_list("set-cookie") if "demur_review=" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served on loopback over plain HTTP
    assert ANA not in cookie
    value = client.cookies["demur_review"]
    client.cookies.clear()
    client.cookies.set("demur_review", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/").status_code == 303  # tampered: signed out


def test_sign_in_needs_the_login_forms_token(client: TestClient):
    client.get("/login")
    assert client.post("/login", data={"csrf": "forged", "token": ANA}).status_code == 403
    fresh = TestClient(client.app, follow_redirects=False)
    assert fresh.post("/login", data={"csrf": "x", "token": ANA}).status_code == 403


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil", "x"])
def test_sign_in_never_redirects_off_site(client: TestClient, target: str):
    page = client.get("/login")
    response = client.post(
        "/login", data={"csrf": csrf_of(page.text), "token": ANA, "next": target}
    )
    assert response.headers["location"] == "/"


def test_sign_in_attempts_are_rate_limited(queue: SqliteQueue):
    with make_client(queue, login_burst=2, login_rate_per_s=0.01) as client:
        page = client.get("/login")
        for _ in range(2):
            page = client.post("/login", data={"csrf": csrf_of(page.text), "token": "x" * 20})
            assert page.status_code == 401
        limited = client.post("/login", data={"csrf": csrf_of(page.text), "token": ANA})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_logout_ends_the_session_and_gives_claimed_tickets_back(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    assert queue.get(ticket.id).status == "claimed"
    response = post(client, "/logout", csrf)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert queue.get(ticket.id).status == "pending"
    assert client.get("/").status_code == 303


def test_secure_cookies_off_loopback(queue: SqliteQueue):
    with make_client(queue, host="0.0.0.0") as client:
        client.base_url = client.base_url.copy_with(scheme="https")
        page = client.get("/login")
        assert "__Host-demur_review_login=" in page.headers["set-cookie"]
        response = client.post("/login", data={"csrf": csrf_of(page.text), "token": ANA})
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if "__Host-demur_review=" in c
        )
        assert "Secure" in cookie and "HttpOnly" in cookie


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login", "/nowhere", "/static/review.css"])
def test_every_response_carries_the_security_headers(ana: Client, path: str):
    client, _ = ana
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert csp == CSP
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


def test_pages_are_not_cached_and_have_no_script(ana: Client, enqueue: Enqueue):
    client, _ = ana
    ticket = enqueue()
    for path in ("/", f"/tickets/{ticket.id}", "/nowhere"):
        response = client.get(path)
        assert response.headers["cache-control"] == "no-store"
        assert "<script" not in response.text.lower()
        assert response.headers["content-type"].startswith("text/html")


# --- the queue -------------------------------------------------------------------------------


def test_the_queue_lists_open_tickets_in_claim_order(ana: Client, enqueue, queue, clock: Clock):
    client, _ = ana
    low = enqueue("low priority, oldest")
    soon = enqueue("high, due soon", priority=5, deadline=clock.now + timedelta(minutes=5))
    later = enqueue("high, due later", priority=5, deadline=clock.now + timedelta(hours=2))
    undated = enqueue("high, no deadline", priority=5)
    held = enqueue("held by ben", priority=1)
    done = enqueue("already resolved", priority=9)
    claim = queue.claim("ben", ticket_id=held.id)
    assert claim is not None
    finished = queue.claim("ben", ticket_id=done.id)
    assert finished is not None
    queue.resolve(done.id, finished.token, Resolution.answer("x"))
    page = client.get("/").text
    order = [t.question for t in (soon, later, undated, held, low)]
    positions = [page.index(q) for q in order]
    assert positions == sorted(positions)
    assert "already resolved" not in page
    assert "claimed by <strong>ben</strong>, lease until" in page
    assert "4 waiting, 1 claimed, 1 resolved, 0 cancelled" in page


def test_the_queue_filters_by_text_and_priority(ana: Client, enqueue: Enqueue):
    client, _ = ana
    enqueue("Who wrote Emma?", priority=1)
    enqueue("Capital of France?", priority=4)
    page = client.get("/", params={"q": "Emma"}).text
    assert "Who wrote Emma?" in page and "Capital of France?" not in page
    page = client.get("/", params={"min_priority": "3"}).text
    assert "Capital of France?" in page and "Who wrote Emma?" not in page
    assert 'value="Emma"' in client.get("/", params={"q": "Emma"}).text
    assert client.get("/", params={"min_priority": "high"}).status_code == 400
    assert client.get("/", params={"offset": "-1"}).status_code == 400
    assert client.get("/", params={"q": "x" * 2000}).status_code == 400
    empty = client.get("/", params={"q": "nothing like it"}).text
    assert 'id="empty"' in empty


@pytest.mark.parametrize(
    "value",
    [str(10**20), str(-(10**20)), "2147483648", "-2147483649", "9" * 5000],
)
def test_a_min_priority_out_of_range_is_a_400_naming_the_range(ana: Client, value: str):
    client, _ = ana
    response = client.get("/", params={"min_priority": value})
    assert response.status_code == 400
    assert "min_priority must lie between -2147483648 and 2147483647" in response.text
    assert "9" * 100 not in response.text  # a long value is not echoed whole


def test_min_priority_at_the_ends_of_its_range(ana: Client, enqueue: Enqueue):
    client, _ = ana
    enqueue("Top?", priority=2**31 - 1)
    enqueue("Bottom?", priority=-(2**31))
    top = client.get("/", params={"min_priority": "2147483647"})
    assert top.status_code == 200 and "Top?" in top.text and "Bottom?" not in top.text
    everything = client.get("/", params={"min_priority": "-2147483648"}).text
    assert "Top?" in everything and "Bottom?" in everything
    for bad in ("1e3", "²", "--1", "1_000"):
        response = client.get("/", params={"min_priority": bad})
        assert (
            response.status_code == 400 and "min_priority must be a whole number" in response.text
        )


def test_the_queue_pages(queue: SqliteQueue, enqueue: Enqueue):
    for i in range(5):
        enqueue(f"question {i}")
    with make_client(queue, page_size=2) as client:
        login(client)
        first = client.get("/").text
        assert "question 0" in first and "question 2" not in first and 'rel="next"' in first
        last = client.get("/", params={"offset": "4"}).text
        assert "question 4" in last and 'rel="next"' not in last and 'rel="prev"' in last


# --- a ticket --------------------------------------------------------------------------------


def test_a_ticket_shows_everything_a_reviewer_needs(ana: Client, enqueue, clock: Clock):
    client, _ = ana
    ticket = enqueue(priority=3, deadline=clock.now + timedelta(hours=1), metadata={"user": "u7"})
    page = client.get(f"/tickets/{ticket.id}").text
    for text in (
        "Capital of France?",
        "France&#x27;s capital is Paris.",
        "Lyon is in France.",
        "confidence 0.35 &lt; threshold 0.5 on strong",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "mean_logprob",
        "-1.234",  # the raw value
        "the model gave no number",
        "confidence <strong>0.35</strong>",
        "confidence <strong>0.20</strong>",
        '<dd id="priority">3</dd>',
        "u7",
    ):
        assert text in page, text
    assert 'id="claim"' in page  # pending: a claim button, no resolve form
    assert "/resolve" not in page


def test_unknown_tickets_and_pages_are_404(ana: Client):
    client, csrf = ana
    for response in (
        client.get("/tickets/no-such-ticket"),
        post(client, "/tickets/no-such-ticket/claim", csrf),
        post(client, "/tickets/no-such-ticket/resolve", csrf, action="reject"),
        client.get("/no/such/page"),
    ):
        assert response.status_code == 404
        assert "Not found" in response.text


def test_wrong_methods_are_405(ana: Client, enqueue: Enqueue):
    client, _ = ana
    ticket = enqueue()
    assert client.get(f"/tickets/{ticket.id}/claim").status_code == 405


# --- claiming and resolving ------------------------------------------------------------------


def test_claim_then_edit_resolves_the_ticket(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    response = post(client, f"/tickets/{ticket.id}/claim", csrf)
    assert (response.status_code, response.headers["location"]) == (303, f"/tickets/{ticket.id}")
    held = queue.get(ticket.id)
    assert (held.status, held.claimed_by) == ("claimed", "ana")
    page = client.get(f"/tickets/{ticket.id}").text
    assert 'id="edit-text"' in page and 'id="approve-submit"' in page
    token = queue._execute("SELECT lease_token FROM tickets WHERE id = ?", (ticket.id,))[0]
    assert token["lease_token"] not in page  # the lease stays on the server
    response = post(
        client,
        f"/tickets/{ticket.id}/resolve",
        csrf,
        action="edit",
        candidate="1",
        text="Paris, France\r\n(the capital)\r\n",
        note="checked the atlas",
    )
    assert (response.status_code, response.headers["location"]) == (303, f"/?resolved={ticket.id}")
    done = queue.get(ticket.id)
    assert (done.status, done.resolution, done.approved) == ("resolved", "edit", 1)
    assert (done.answer, done.reviewer, done.note) == (
        "Paris, France\n(the capital)",
        "ana",
        "checked the atlas",
    )
    assert f"Ticket {ticket.id} resolved." in client.get(response.headers["location"]).text
    page = client.get(f"/tickets/{ticket.id}").text
    assert "Paris, France\n(the capital)" in page and 'id="claim"' not in page


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"action": "approve", "candidate": "1"}, ("approve", "Paris")),
        ({"action": "answer", "text": "Paris"}, ("answer", "Paris")),
        ({"action": "reject", "note": "none is right"}, ("reject", None)),
    ],
)
def test_approve_answer_and_reject(ana: Client, enqueue, queue, fields, expected):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, **fields)
    assert response.status_code == 303, response.text
    done = queue.get(ticket.id)
    assert (done.resolution, done.answer) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "approve"},
        {"action": "approve", "candidate": "7"},
        {"action": "approve", "candidate": "-1"},
        {"action": "edit", "candidate": "0", "text": "   "},
        {"action": "answer"},
        {"action": "delete"},
        {},
    ],
)
def test_a_malformed_resolution_is_refused_and_the_claim_kept(ana: Client, enqueue, queue, fields):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, **fields)
    assert response.status_code == 400
    assert queue.get(ticket.id).status == "claimed"
    assert 'id="edit-text"' in client.get(f"/tickets/{ticket.id}").text  # still holding it


def test_release_and_renew(ana: Client, enqueue, queue, clock: Clock):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    before = queue.get(ticket.id).lease_expires_at
    clock.advance(30)
    assert post(client, f"/tickets/{ticket.id}/renew", csrf).status_code == 303
    after = queue.get(ticket.id).lease_expires_at
    assert before is not None and after is not None and after > before
    response = post(client, f"/tickets/{ticket.id}/release", csrf)
    assert (response.status_code, response.headers["location"]) == (303, f"/?released={ticket.id}")
    assert queue.get(ticket.id).status == "pending"
    assert post(client, f"/tickets/{ticket.id}/release", csrf).status_code == 409


def test_claiming_twice_keeps_the_lease(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    assert post(client, f"/tickets/{ticket.id}/claim", csrf).status_code == 303
    assert queue.get(ticket.id).claims == 1


# --- conflicts -------------------------------------------------------------------------------


def test_an_expired_lease_gets_a_clear_page(ana: Client, enqueue, queue, clock: Clock):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    clock.advance(61)
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, action="answer", text="Paris")
    assert response.status_code == 409
    assert "Lease expired" in response.text and "ran out" in response.text
    assert 'id="claim"' in response.text  # claim it again from here
    assert queue.get(ticket.id).status == "pending"


def test_a_lease_taken_over_by_another_reviewer(queue, enqueue, clock: Clock):
    ticket = enqueue()
    with make_client(queue) as ana, make_client(queue) as ben:
        ana_csrf, ben_csrf = login(ana, ANA), login(ben, BEN)
        post(ana, f"/tickets/{ticket.id}/claim", ana_csrf)
        busy = post(ben, f"/tickets/{ticket.id}/claim", ben_csrf)
        assert busy.status_code == 409 and "Claimed by someone else" in busy.text
        assert "ana holds ticket" in busy.text
        clock.advance(61)
        assert post(ben, f"/tickets/{ticket.id}/claim", ben_csrf).status_code == 303
        late = post(ana, f"/tickets/{ticket.id}/resolve", ana_csrf, action="answer", text="Lyon")
        assert late.status_code == 409
        assert "Your lease ran out and ben holds ticket" in late.text
        assert queue.get(ticket.id).claimed_by == "ben"


def test_a_reviewer_who_signs_in_again_continues_their_claim(queue, enqueue, clock: Clock):
    ticket = enqueue()
    with make_client(queue) as ana, make_client(queue) as ben:
        csrf, ben_csrf = login(ana, ANA), login(ben, BEN)
        assert post(ana, f"/tickets/{ticket.id}/claim", csrf).status_code == 303
        first = queue.get(ticket.id)
        ana.cookies.clear()  # the session is gone (expired, or the browser forgot it)
        csrf = login(ana, ANA)
        clock.advance(30)
        page = ana.get(f"/tickets/{ticket.id}").text
        assert 'id="held-elsewhere"' in page and "Continue your claim" in page
        assert 'id="answer-form"' not in page
        refused = post(ana, f"/tickets/{ticket.id}/resolve", csrf, action="reject")
        assert refused.status_code == 409 and "Claimed in another sign-in" in refused.text
        assert 'id="claim"' in refused.text  # continue the claim from here
        busy = post(ben, f"/tickets/{ticket.id}/claim", ben_csrf)
        assert busy.status_code == 409 and "ana holds ticket" in busy.text
        assert post(ana, f"/tickets/{ticket.id}/claim", csrf).status_code == 303
        held = queue.get(ticket.id)
        assert (held.claimed_by, held.claims, held.claimed_at) == ("ana", 1, first.claimed_at)
        assert first.lease_expires_at is not None and held.lease_expires_at is not None
        assert held.lease_expires_at > first.lease_expires_at  # the lease was renewed
        assert 'id="holding"' in ana.get(f"/tickets/{ticket.id}").text
        busy = post(ben, f"/tickets/{ticket.id}/claim", ben_csrf)
        assert busy.status_code == 409 and "Claimed by someone else" in busy.text
        done = post(ana, f"/tickets/{ticket.id}/resolve", csrf, action="answer", text="Paris")
        assert done.status_code == 303
        resolved = queue.get(ticket.id)
        assert (resolved.status, resolved.reviewer, resolved.answer) == ("resolved", "ana", "Paris")


def test_two_sign_ins_of_one_reviewer_share_the_claim(queue, enqueue):
    ticket = enqueue()
    with make_client(queue) as laptop, make_client(queue) as phone:
        laptop_csrf, phone_csrf = login(laptop, ANA), login(phone, ANA)
        post(laptop, f"/tickets/{ticket.id}/claim", laptop_csrf)
        post(phone, f"/tickets/{ticket.id}/claim", phone_csrf)  # continues, same lease
        post(phone, f"/tickets/{ticket.id}/release", phone_csrf)
        post(phone, f"/tickets/{ticket.id}/claim", phone_csrf)  # a new claim, a new lease
        assert queue.get(ticket.id).claims == 2
        # The laptop's lease is the old one: it is told so, and claiming picks up the new one.
        stale = post(laptop, f"/tickets/{ticket.id}/resolve", laptop_csrf, action="reject")
        assert stale.status_code == 409 and "Claimed in another sign-in" in stale.text
        assert post(laptop, f"/tickets/{ticket.id}/claim", laptop_csrf).status_code == 303
        done = post(laptop, f"/tickets/{ticket.id}/resolve", laptop_csrf, action="reject")
        assert done.status_code == 303 and queue.get(ticket.id).status == "resolved"
        assert queue.get(ticket.id).claims == 2


def test_an_already_resolved_ticket(queue, enqueue):
    ticket = enqueue()
    with make_client(queue) as ana, make_client(queue) as ben:
        ana_csrf, ben_csrf = login(ana, ANA), login(ben, BEN)
        post(ana, f"/tickets/{ticket.id}/claim", ana_csrf)
        post(ana, f"/tickets/{ticket.id}/resolve", ana_csrf, action="approve", candidate="1")
        for response in (
            post(ben, f"/tickets/{ticket.id}/claim", ben_csrf),
            post(ben, f"/tickets/{ticket.id}/resolve", ben_csrf, action="reject"),
        ):
            assert response.status_code == 409
            assert "Already resolved" in response.text and "by ana" in response.text


def test_resolving_without_a_claim(ana: Client, enqueue):
    client, csrf = ana
    ticket = enqueue()
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, action="reject")
    assert response.status_code == 409 and "Claim it first" in response.text


def test_a_cancelled_ticket(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    queue.cancel(ticket.id, reason="the caller gave up")
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, action="reject")
    assert response.status_code == 409 and "cancelled" in response.text


# --- CSRF ------------------------------------------------------------------------------------


def test_every_post_needs_the_sessions_csrf_token(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    wrong = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")
    for data in ({"other": "1"}, {"csrf": ""}, {"csrf": wrong}):
        response = client.post(f"/tickets/{ticket.id}/claim", data=data)
        assert response.status_code == 403 and "security token" in response.text
    assert client.post("/logout", data={"other": "1"}).status_code == 403
    assert queue.get(ticket.id).status == "pending"


def test_another_sessions_csrf_token_does_not_work(queue, enqueue):
    ticket = enqueue()
    with make_client(queue) as ana, make_client(queue) as ben:
        login(ana, ANA)
        ben_csrf = login(ben, BEN)
        assert post(ana, f"/tickets/{ticket.id}/claim", ben_csrf).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_site_posts_are_refused_even_with_the_token(ana: Client, enqueue, queue, headers):
    client, csrf = ana
    ticket = enqueue()
    response = client.post(f"/tickets/{ticket.id}/claim", data={"csrf": csrf}, headers=headers)
    assert response.status_code == 403
    assert queue.get(ticket.id).status == "pending"


def test_same_origin_posts_pass(ana: Client, enqueue):
    client, csrf = ana
    ticket = enqueue()
    headers = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    response = client.post(f"/tickets/{ticket.id}/claim", data={"csrf": csrf}, headers=headers)
    assert response.status_code == 303


# --- hostile input ---------------------------------------------------------------------------


def test_model_and_user_text_is_escaped_everywhere(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue(
        f"Question {XSS_IMG}",
        context=(XSS_TEXTAREA,),
        candidates=(
            candidate("weak", XSS_SCRIPT, 0.2),
            candidate(f"strong{XSS_ATTRIBUTE}", XSS_TEXTAREA, 0.4),
        ),
        reason=XSS_ATTRIBUTE,
        metadata={"note": XSS_SCRIPT},
    )
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    pages = [
        client.get("/").text,
        client.get("/", params={"q": XSS_ATTRIBUTE}).text,
        client.get(f"/tickets/{ticket.id}").text,
    ]
    for page in pages:
        assert_inert(page)
        assert "<script" not in page.lower()
    ticket_page = pages[2]
    assert "&lt;script&gt;window.__pwned = &quot;script&quot;" in ticket_page
    assert "&lt;/textarea&gt;&lt;script&gt;" in ticket_page
    assert "onfocus=&quot;window.__pwned" in ticket_page
    # The edit box starts from the most confident candidate: the textarea cannot be closed.
    textareas = [attrs for tag, attrs in elements(ticket_page) if tag == "textarea"]
    assert len(textareas) == 2
    # The queue's filter box keeps the attribute-breaking text inside its value.
    inputs = [a for tag, a in elements(pages[1]) if tag == "input" and a.get("name") == "q"]
    assert inputs == [
        {
            "type": "search",
            "id": "q",
            "name": "q",
            "value": XSS_ATTRIBUTE.strip(),
            "maxlength": "1000",
        }
    ]


def test_an_oversized_form_is_413(queue, enqueue):
    ticket = enqueue()
    with make_client(queue, max_body_bytes=4096) as client:
        csrf = login(client)
        post(client, f"/tickets/{ticket.id}/claim", csrf)
        response = post(
            client, f"/tickets/{ticket.id}/resolve", csrf, action="answer", text="x" * 10_000
        )
        assert response.status_code == 413 and "limit of 4 KiB" in response.text
        lying = client.post(
            f"/tickets/{ticket.id}/resolve",
            content=b"csrf=x&text=" + b"y" * 5000,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "content-length": "10",
            },
        )
        assert lying.status_code in (400, 413)
        assert queue.get(ticket.id).status == "claimed"


def test_an_answer_over_the_queues_limit_is_refused(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    response = post(
        client, f"/tickets/{ticket.id}/resolve", csrf, action="answer", text="é" * 40_000
    )
    assert response.status_code == 400
    assert "over the limit of 64 KiB" in response.text and "you still hold" in response.text
    assert queue.get(ticket.id).status == "claimed"


@pytest.mark.parametrize(
    "body",
    [
        b"action=answer&text=%FF%FE",  # percent-encoded bytes that are not UTF-8
        b"action=answer&text=\xff\xfe",  # raw bytes that are not UTF-8
        b"action=answer&text=%ED%A0%80",  # an encoded surrogate
    ],
)
def test_invalid_utf8_is_refused(ana: Client, enqueue, queue, body: bytes):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    response = client.post(
        f"/tickets/{ticket.id}/resolve",
        content=f"csrf={csrf}&".encode() + body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and "not valid UTF-8" in response.text
    assert queue.get(ticket.id).status == "claimed"


def test_a_nul_character_is_refused(ana: Client, enqueue, queue):
    client, csrf = ana
    ticket = enqueue()
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    response = post(client, f"/tickets/{ticket.id}/resolve", csrf, action="answer", text="a\x00b")
    assert response.status_code == 400 and "NUL" in response.text
    assert queue.get(ticket.id).status == "claimed"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        None,
        "application/x-www-form-urlencoded; charset=latin-1",
    ],
)
def test_only_urlencoded_utf8_forms_are_accepted(ana: Client, enqueue, content_type):
    client, csrf = ana
    ticket = enqueue()
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(
        f"/tickets/{ticket.id}/claim", content=f"csrf={csrf}".encode(), headers=headers
    )
    assert response.status_code == 415


def test_repeated_and_too_many_fields_are_refused(ana: Client, enqueue):
    client, csrf = ana
    ticket = enqueue()
    form = {"content-type": "application/x-www-form-urlencoded"}
    twice = f"csrf={csrf}&csrf={csrf}".encode()
    assert (
        client.post(f"/tickets/{ticket.id}/claim", content=twice, headers=form).status_code == 400
    )
    many = f"csrf={csrf}&".encode() + b"&".join(b"f%d=1" % i for i in range(40))
    assert client.post(f"/tickets/{ticket.id}/claim", content=many, headers=form).status_code == 400


def test_a_notice_never_reflects_arbitrary_text(ana: Client):
    client, _ = ana
    page = client.get("/", params={"resolved": "Your session expired, call +1 555"}).text
    assert "call +1 555" not in page


def test_a_ticket_without_candidates_can_only_be_answered_or_rejected(ana: Client, enqueue):
    client, csrf = ana
    ticket = enqueue("Nobody answered this", candidates=(), context=())
    post(client, f"/tickets/{ticket.id}/claim", csrf)
    page = client.get(f"/tickets/{ticket.id}").text
    assert "No model answered" in page and "No passages came with the question" in page
    assert 'id="answer-text"' in page and 'id="reject-submit"' in page
    assert 'id="approve-form"' not in page and 'id="edit-form"' not in page


def test_a_long_unknown_id_is_not_echoed_whole(ana: Client):
    client, _ = ana
    response = client.get("/tickets/" + "a" * 5000)
    assert response.status_code == 404 and "a" * 100 not in response.text


class _Broken:
    """A queue whose listing fails: unreachable, or a bug."""

    def __init__(self, queue: SqliteQueue, error: Exception) -> None:
        self._queue, self._error = queue, error

    def tickets(self, **filters: object) -> list[Ticket]:
        raise self._error

    def __getattr__(self, name: str) -> object:
        return getattr(self._queue, name)


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (QueueUnavailable("database is locked"), 503, "cannot be reached right now"),
        (RuntimeError("a bug"), 500, "Something went wrong"),
    ],
)
def test_queue_failures_get_an_error_page(queue: SqliteQueue, error, status, text):
    app = create_review_app(
        _Broken(queue, error),
        ReviewSettings(tokens={ANA: "ana"}, tokens_env=None, allowed_hosts=TEST_HOSTS),
    )
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
        page = client.get("/login")
        client.post("/login", data={"csrf": csrf_of(page.text), "token": ANA})
        response = client.get("/")
        assert response.status_code == status and text in response.text
        assert response.headers["content-security-policy"] == CSP
        assert "a bug" not in response.text and "database is locked" not in response.text

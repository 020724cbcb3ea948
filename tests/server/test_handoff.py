"""A hand-off to a person, as OpenAI clients see it: a distinct finish reason, the ticket to
poll, one ticket per retried request, and no queue internals in what clients get."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import openai
import pytest

from demur import AskHuman, Escalate, Reply, Resolution, SqliteQueue
from demur.errors import QueueUnavailable
from demur.queue.base import Ticket, TicketRequest
from demur.server.reasons import REASON_CODES
from tests.server.conftest import KEY, running, scripted_router

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
OTHER_KEY = "sk-other-key"


def client(server, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)


def ask(server, *, key: str = KEY, idempotency: str | None = None, **fields: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency is not None:
        headers["Idempotency-Key"] = idempotency
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demur", "messages": QUESTION, **fields},
        headers=headers,
        timeout=10,
    )


def poll(server, path: str, key: str = KEY) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_the_openai_client_sees_a_hand_off_and_polls_for_the_persons_answer(human_router, tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db")
    with running(human_router) as server:
        openai_client = client(server)
        completion = openai_client.chat.completions.create(model="demur", messages=QUESTION)
        choice = completion.choices[0]
        demur = (completion.model_extra or {})["demur"]
        assert choice.finish_reason == "human_review"
        assert demur["status"] == "pending" and demur["ticket_id"] in (choice.message.content or "")
        path = demur["poll"]
        assert path == f"/v1/demur/tickets/{demur['ticket_id']}"

        pending = openai_client.get(path.removeprefix("/v1"), cast_to=object)
        assert pending["object"] == "demur.ticket" and pending["status"] == "pending"
        assert pending["content"] is None and pending["resolved"] is None

        claim = queue.claim("ana", ticket_id=demur["ticket_id"])
        assert claim is not None
        queue.resolve(claim.ticket.id, claim.token, Resolution.answer("Paris"), reviewer="ana")
        answered = openai_client.get(path.removeprefix("/v1"), cast_to=object)
    assert answered["status"] == "answered" and answered["content"] == "Paris"
    assert answered["model"] == "human" and answered["resolved"] >= answered["created"]
    assert "ana" not in json.dumps(answered)  # reviewers stay anonymous to API clients


def test_a_rejected_hand_off_reads_as_abstained(human_router, tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db")
    with running(human_router) as server:
        path = ask(server).json()["demur"]["poll"]
        claim = queue.claim("ana")
        assert claim is not None
        queue.resolve(claim.ticket.id, claim.token, Resolution.reject(), note="No one knows.")
        ticket = poll(server, path).json()
    assert ticket["status"] == "abstained" and ticket["content"] == "No one knows."


def test_streaming_a_hand_off_finishes_with_human_review(human_router):
    with running(human_router) as server:
        chunks = list(
            client(server).chat.completions.create(model="demur", messages=QUESTION, stream=True)
        )
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.choices[0].finish_reason == "human_review"
    assert (last.model_extra or {})["demur"]["poll"].startswith("/v1/demur/tickets/")


def test_a_retried_request_with_the_same_idempotency_key_files_one_ticket(human_router, tmp_path):
    with running(human_router) as server:
        first = ask(server, idempotency="retry-7f3a")
        again = ask(server, idempotency="retry-7f3a")
        other = ask(server, idempotency="retry-0000")
    ids = [r.json()["demur"]["ticket_id"] for r in (first, again, other)]
    assert ids[0] == ids[1] != ids[2]
    assert first.headers["x-demur-ticket-id"] == again.headers["x-demur-ticket-id"]
    stored = SqliteQueue(tmp_path / "queue.db").tickets()
    assert sorted(t.id for t in stored) == sorted({ids[0], ids[2]})


def test_requests_without_a_key_file_a_ticket_each(human_router, tmp_path):
    with running(human_router) as server:
        ids = {ask(server).json()["demur"]["ticket_id"] for _ in range(2)}
    assert len(ids) == 2 and len(SqliteQueue(tmp_path / "queue.db").tickets()) == 2


def test_idempotency_keys_and_tickets_belong_to_the_api_key_that_asked(human_router):
    with running(human_router, api_keys=(KEY, OTHER_KEY)) as server:
        mine = ask(server, idempotency="same").json()["demur"]
        theirs = ask(server, key=OTHER_KEY, idempotency="same").json()["demur"]
        assert mine["ticket_id"] != theirs["ticket_id"]
        assert poll(server, mine["poll"]).status_code == 200
        hidden = poll(server, mine["poll"], key=OTHER_KEY)
        assert poll(server, mine["poll"], key="sk-wrong").status_code == 401
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "ticket_not_found"


def test_an_unknown_ticket_is_an_openai_404(human_router):
    with running(human_router) as server, pytest.raises(openai.NotFoundError) as caught:
        client(server).get("/demur/tickets/no-such-ticket", cast_to=object)
    assert caught.value.code == "ticket_not_found"


@pytest.mark.parametrize("value", ["", "x" * 201, "naïve-key"])
def test_a_malformed_idempotency_key_is_400_naming_the_header(human_router, value):
    with running(human_router) as server:
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "demur", "messages": QUESTION},
            headers={"Authorization": f"Bearer {KEY}", "Idempotency-Key": value.encode()},
            timeout=10,
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


class BrokenQueue(SqliteQueue):
    """A queue whose database is gone: its error names the file, as real ones do."""

    def enqueue(self, request: TicketRequest | Any) -> Ticket:
        raise QueueUnavailable("cannot open the queue database /srv/private/queue.db: disk I/O")


def test_a_broken_queue_gives_clients_a_reason_code_and_keeps_details_in_the_log(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    router = scripted_router(
        Reply.confident("Lyon", 0.2),
        Reply.confident("Marseille", 0.3),
        rungs=[Escalate("strong"), AskHuman()],
        queue=BrokenQueue(tmp_path / "q.db"),
    )
    with running(router) as server:
        response = ask(server)
    assert response.status_code == 200 and "/srv/private" not in response.text
    last = response.json()["demur"]["steps"][-1]
    assert last["action"] == "abstain"
    assert last["reason_code"] in ("queue_unavailable", "queue_failed")
    assert last["reason"].startswith("confidence 0.300 < threshold 0.500; the review queue")
    assert last["reason"].endswith(", so no person was asked")
    assert {s["reason_code"] for s in response.json()["demur"]["steps"]} <= set(REASON_CODES)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("demur.")]
    assert any("/srv/private/queue.db" in line for line in logged)  # for the operator

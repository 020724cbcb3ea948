"""The official openai client against the real gateway on loopback: sync, async, streaming."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from demur import Reply, SqliteQueue
from demur.server import BackgroundServer
from tests.server.conftest import KEY, running, scripted_router

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def client(server: BackgroundServer, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)


def async_client(server: BackgroundServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10)


def test_an_escalated_answer_with_the_verdict_in_body_and_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="demur", messages=QUESTION
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "demur"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris is the capital"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5  # 1 + 4
    demur = (completion.model_extra or {})["demur"]
    assert demur["action"] == "accept" and demur["status"] == "answered"
    assert demur["model"] == "strong" and demur["escalated"] is True
    assert demur["confidence"] == pytest.approx(0.9)
    assert [(s["model"], s["action"]) for s in demur["steps"]] == [
        ("weak", "escalate"),
        ("strong", "accept"),
    ]
    assert raw.headers["x-demur-action"] == "accept"
    assert raw.headers["x-demur-status"] == "answered"
    assert float(raw.headers["x-demur-confidence"]) == pytest.approx(0.9)
    assert raw.headers["x-demur-model"] == "strong"
    assert "x-demur-ticket-id" not in raw.headers
    assert raw.headers["x-request-id"] == completion.id


def test_an_abstention_is_a_normal_answer_with_the_abstention_message():
    router = scripted_router(Reply.confident("Lyon", 0.2), Reply.confident("Nice", 0.3))
    with running(router) as server:
        raw = client(server).chat.completions.with_raw_response.create(
            model="demur", messages=QUESTION
        )
    completion = raw.parse()
    assert raw.http_response.status_code == 200
    assert completion.choices[0].message.content == "I am not sure."
    assert (completion.model_extra or {})["demur"]["status"] == "abstained"
    assert raw.headers["x-demur-action"] == "abstain"


def test_a_human_hand_off_returns_the_pending_ticket(human_router, tmp_path):
    with running(human_router) as server:
        raw = client(server).chat.completions.with_raw_response.create(
            model="demur", messages=QUESTION
        )
    completion = raw.parse()
    demur = (completion.model_extra or {})["demur"]
    ticket = raw.headers["x-demur-ticket-id"]
    assert completion.choices[0].finish_reason == "human_review"  # not an answer
    assert demur["status"] == "pending" and demur["action"] == "ask_human"
    assert demur["ticket_id"] == ticket and demur["poll"] == f"/v1/demur/tickets/{ticket}"
    assert ticket in (completion.choices[0].message.content or "")
    stored = SqliteQueue(tmp_path / "queue.db").get(ticket)
    assert stored.question == "What is the capital of France?"
    assert [c.text for c in stored.candidates] == ["Lyon", "Marseille"]


def test_streaming_sends_only_the_gated_answer_then_done(gateway):
    stream = client(gateway).chat.completions.create(
        model="demur", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital"
    assert all("Lyon" not in (c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    demur = (finish[0].model_extra or {})["demur"]
    assert demur["action"] == "accept" and demur["model"] == "strong"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0


def test_streaming_an_abstention_over_raw_sse():
    router = scripted_router(Reply.confident("Lyon", 0.2), Reply.confident("Nice", 0.3))
    with running(router) as server:
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "demur", "messages": QUESTION, "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-demur-action"] == "abstain"
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert "Lyon" not in response.text and "Nice" not in response.text
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "I am not sure."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["demur"]["status"] == "abstained"
    assert all("demur" not in c for c in chunks[:-1])


async def test_async_client_plain_and_streaming(gateway):
    async with async_client(gateway) as aclient:
        completion = await aclient.chat.completions.create(model="demur", messages=QUESTION)
        assert completion.choices[0].message.content == "Paris is the capital"
        stream = await aclient.chat.completions.create(
            model="demur", messages=QUESTION, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "Paris is the capital"


async def test_concurrent_async_requests_each_get_their_own_verdict(gateway):
    import asyncio

    async with async_client(gateway) as aclient:
        results = await asyncio.gather(
            *(aclient.chat.completions.create(model="demur", messages=QUESTION) for _ in range(20))
        )
    assert {r.choices[0].message.content for r in results} == {"Paris is the capital"}
    assert len({r.id for r in results}) == 20


def test_models_lists_the_gateway_and_its_models(gateway):
    c = client(gateway)
    assert [m.id for m in c.models.list()] == ["demur", "weak", "strong"]
    assert c.models.retrieve("strong").owned_by == "demur"
    with pytest.raises(openai.NotFoundError) as caught:
        c.models.retrieve("gpt-nope")
    assert caught.value.code == "model_not_found"


def test_a_models_name_starts_the_ladder_at_that_model(gateway):
    completion = client(gateway).chat.completions.create(model="strong", messages=QUESTION)
    assert completion.model == "strong"
    demur = (completion.model_extra or {})["demur"]
    assert [s["model"] for s in demur["steps"]] == ["strong"]  # weak was never asked
    assert demur["model"] == "strong" and demur["escalated"] is False


def test_an_unknown_model_is_an_openai_404_naming_what_is_served(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "demur, weak, strong" in caught.value.message


def test_context_passages_in_an_extra_body_field_reach_the_model():
    router = scripted_router(Reply.confident("Emma", 0.9))
    weak = router.models["weak"]
    with running(router) as server:
        completion = client(server).chat.completions.create(
            model="demur",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Who wrote Emma?"}]},
            ],
            extra_body={"context": ["Emma is an 1815 novel by Jane Austen."]},
        )
    assert completion.choices[0].message.content == "Emma"
    prompt = " ".join(m.content for m in weak.calls[0].messages or ())  # type: ignore[attr-defined]
    assert "Emma is an 1815 novel by Jane Austen." in prompt
    assert "Who wrote Emma?" in prompt

"""Every kind of bad input gets a clear OpenAI-style error with the right status, promptly."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from demur import (
    Abstain,
    AskHuman,
    ContextOverflowError,
    Ladder,
    MeanTokenLogprob,
    Reply,
    RetryPolicy,
    Router,
    SqliteQueue,
)
from demur.adapters.models.openai_http import OpenAICompatibleModel
from demur.bases import PolicyBase
from demur.policies.base import RouteState
from demur.router.budget import Budget
from demur.server import BackgroundServer
from demur.types import Decision, Escalate
from tests.adapters.openai_stub_server import StubServer
from tests.server.conftest import KEY, running, scripted_router

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(
    server: BackgroundServer,
    body: object = None,
    *,
    content: object = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json=body,
        content=content,
        headers={**AUTH, **(headers or {})},
        timeout=10,
    )


def error_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"] and error["type"]
    return error


# --- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b'{"model": "demur", "messages": [', "invalid_json", "not valid JSON"),
        (b"\xff\xfe not utf-8", "invalid_json", "not valid JSON"),
        (b"[1, 2]", "invalid_json", "must be a JSON object, got list"),
        (b"", None, "request body is empty"),
    ],
)
def test_malformed_bodies_are_400(gateway, content, code, message):
    response = post(gateway, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code and message in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "demur"}, "messages", "Field required"),
        ({"messages": QUESTION}, "model", "Field required"),
        ({"model": "demur", "messages": []}, "messages", "at least 1 item"),
        (
            {"model": "demur", "messages": [{"role": "robot", "content": "hi"}]},
            "messages[0].role",
            "'robot'",
        ),
        ({"model": "demur", "messages": QUESTION, "stream": "sometimes"}, "stream", "boolean"),
        ({"model": "demur", "messages": QUESTION, "context": ["ok", {}]}, "context[1]", "string"),
    ],
)
def test_schema_errors_are_422_and_name_the_field(gateway, body, param, message):
    response = post(gateway, body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"messages": [*QUESTION, {"role": "assistant", "content": "Paris"}]},
            "messages[1].role",
            "last message must be the user's question",
        ),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages[0]", "empty"),
        ({"messages": QUESTION, "n": 2}, "n", "n must be 1"),
        ({"messages": QUESTION, "tools": [{"type": "function"}]}, "tools", "not supported"),
        (
            {"messages": QUESTION, "response_format": {"type": "json_object"}},
            "response_format",
            "not supported",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
            "image_url",
        ),
    ],
)
def test_requests_the_gateway_cannot_route_are_400(gateway, body, param, message):
    response = post(gateway, {"model": "demur", **body})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and message in error["message"]


def test_unknown_fields_are_ignored_as_openai_does(gateway):
    body = {"model": "demur", "messages": QUESTION, "x_custom": True, "metadata": {"a": "b"}}
    assert post(gateway, body).status_code == 200


def test_unknown_path_and_wrong_method_are_json_404_and_405(gateway):
    missing = httpx.get(f"{gateway.url}/v1/embeddings", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = httpx.get(f"{gateway.base_url}/chat/completions", headers=AUTH, timeout=10)
    assert wrong.status_code == 405 and "GET" in error_of(wrong)["message"]


# --- size limits -----------------------------------------------------------------------------


def test_a_declared_oversized_body_is_413_before_it_is_read():
    with running(scripted_router(), max_body_bytes=1000) as server:
        big = {"model": "demur", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = post(server, big)
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "request_too_large" and "limit of 1000 bytes" in error["message"]
        small = {"model": "demur", "messages": QUESTION}
        assert post(server, small).status_code == 200


def test_a_chunked_body_growing_past_the_limit_is_413():
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "demur", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 100  # no Content-Length: the server must count as it reads

    with running(scripted_router(), max_body_bytes=2000) as server:
        response = post(server, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "over this server's limit of 2000 bytes" in error_of(response)["message"]


def test_a_huge_declared_body_is_refused_without_waiting_for_it():
    # Headers only: a server that read the 10 MB before answering would hang here.
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        "Content-Length: 10000000\r\n\r\n"
    )
    with (
        running(scripted_router(), max_body_bytes=1000) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(head.encode() + b"{")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "10000000 bytes" in reply


def test_a_malformed_content_length_is_400():
    with (
        running(scripted_router()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Length: -5\r\n\r\n"
        )
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 400")


# --- what the router raises or records -------------------------------------------------------


def test_a_question_that_fits_no_model_is_400_context_length_exceeded():
    overflow = ContextOverflowError("prompt is 3000 tokens but the window is 2048")
    with running(scripted_router(overflow, overflow)) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded" and "2048" in error["message"]


def test_a_route_past_the_gateway_timeout_is_504_and_frees_the_server():
    slow = Reply(text="Paris", logprobs=(-0.1,), delay_s=5.0)
    with running(scripted_router(slow), route_timeout_s=0.3) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
        assert response.status_code == 504
        error = error_of(response)
        assert error["code"] == "route_timeout" and "0.3s" in error["message"]
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 200


class _Broken(PolicyBase):
    """A policy that escalates to a model the router does not have: a RouteError."""

    name = "broken"

    def decide(self, state: RouteState) -> Decision:
        return Decision(action=Escalate("nowhere"), reason="bug")


def test_a_router_error_is_500_without_internals():
    router = scripted_router()
    router.policy = _Broken()  # type: ignore[assignment]
    with running(router) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "route_error" and "nowhere" not in error["message"]


# --- an OpenAI-compatible upstream that fails --------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def upstream_router(stub: StubServer, *, timeout_s: float = 2.0, **options: object) -> Router:
    model = OpenAICompatibleModel("upstream", base_url=stub.base_url, timeout_s=timeout_s)
    options.setdefault("policy", Ladder(0.5, rungs=[Abstain()]))
    return Router(
        [model],
        estimators=[MeanTokenLogprob()],
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01),
        **options,  # type: ignore[arg-type]
    )


def upstream_client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=15)


def test_an_upstream_answer_passes_through(stub):
    with running(upstream_router(stub)) as server:
        completion = upstream_client(server).chat.completions.create(
            model="demur", messages=QUESTION
        )
    assert completion.choices[0].message.content == "Paris is the capital"
    assert (completion.model_extra or {})["demur"]["confidence"] == pytest.approx(0.905, 1e-3)
    assert stub.requests[0].body["logprobs"] is True


def test_an_upstream_500_once_is_retried_and_answered(stub):
    stub.push("500")
    with running(upstream_router(stub)) as server:
        completion = upstream_client(server).chat.completions.create(
            model="demur", messages=QUESTION
        )
    assert completion.choices[0].message.content == "Paris is the capital"
    assert len(stub.requests) == 2


def test_an_upstream_that_keeps_failing_with_500_is_502(stub):
    stub.push("500", "500", "500")
    with running(upstream_router(stub)) as server, pytest.raises(openai.APIStatusError) as caught:
        upstream_client(server).chat.completions.create(model="demur", messages=QUESTION)
    error = caught.value
    assert error.status_code == 502
    body = error.body
    assert isinstance(body, dict) and body["code"] == "upstream_error"
    assert "upstream: ServerError" in body["message"]
    assert stub.base_url not in body["message"]  # the upstream's address stays private
    assert error.response.headers["x-demur-action"] == "abstain"
    assert error.response.json()["demur"]["steps"][0]["error_type"] == "ServerError"


def test_an_upstream_that_times_out_is_504(stub):
    stub.state.hang_s = 5.0
    stub.push("hang", "hang")
    router = upstream_router(stub, timeout_s=0.3)
    with running(router) as server, pytest.raises(openai.APIStatusError) as caught:
        upstream_client(server).chat.completions.create(model="demur", messages=QUESTION)
    assert caught.value.status_code == 504
    assert "ModelTimeoutError" in str(caught.value.body)


def test_an_upstream_slower_than_the_route_deadline_is_504(stub):
    stub.state.hang_s = 5.0
    stub.push("hang")
    router = upstream_router(stub, timeout_s=10.0, budget=Budget(deadline_s=0.5))
    with running(router) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
    assert response.status_code == 504
    assert "DeadlineExceededError" in error_of(response)["message"]


def test_a_failing_upstream_still_reaches_a_person_when_the_ladder_says_so(stub, tmp_path):
    stub.push("500", "500")
    router = upstream_router(
        stub,
        policy=Ladder(0.5, rungs=[AskHuman()]),
        queue=SqliteQueue(tmp_path / "queue.db"),
    )
    with running(router) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
    assert response.status_code == 200
    assert response.headers["x-demur-status"] == "pending"
    assert response.headers["x-demur-ticket-id"] in response.text


def test_an_unreachable_upstream_is_502():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    model = OpenAICompatibleModel("gone", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    router = Router(
        [model],
        policy=Ladder(0.5, rungs=[Abstain()]),
        retry=RetryPolicy(max_attempts=1),
    )
    with running(router) as server:
        response = post(server, {"model": "demur", "messages": QUESTION})
    assert response.status_code == 502
    assert "gone: ServerError" in error_of(response)["message"]

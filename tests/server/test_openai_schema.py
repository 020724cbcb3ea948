"""How OpenAI chat requests map onto demur Queries, and verdicts onto responses."""

from __future__ import annotations

import pytest

from demur import Reply
from demur.server.metrics import GatewayMetrics
from demur.server.openai_schema import (
    ChatCompletionRequest,
    CompletionUsage,
    DemurInfo,
    RequestProblem,
)
from tests.server.conftest import scripted_router


def request(*messages: dict, **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "demur", "messages": list(messages), **extra}
    )


def test_the_last_user_message_is_the_question_and_the_rest_is_metadata():
    query = request(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Cite passages."},
        {"role": "user", "content": "Who wrote Emma?"},
        {"role": "assistant", "content": "Jane Austen."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "When?"}, {"type": "text", "text": "Year only."}],
        },
        context="Emma was published in 1815.",
        user="u-1",
    ).to_query("chatcmpl-1")
    assert query.question == "When?\nYear only."
    assert query.context == ("Emma was published in 1815.",)
    assert query.id == "chatcmpl-1"
    assert query.metadata == {
        "system": "Be brief.\nCite passages.",
        "history": [
            {"role": "user", "content": "Who wrote Emma?"},
            {"role": "assistant", "content": "Jane Austen."},
        ],
        "user": "u-1",
    }


def test_a_plain_question_has_no_metadata():
    query = request({"role": "user", "content": "Q?"}, max_tokens=5, seed=1).to_query("id")
    assert query.metadata == {} and query.context == ()


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        ([{"role": "assistant", "content": "x"}], {}, "messages[0].role"),
        ([{"role": "user", "content": None}], {}, "messages[0]"),
        ([{"role": "user", "content": "q"}], {"tool_choice": "auto"}, "tool_choice"),
        ([{"role": "user", "content": "q"}], {"functions": [{"name": "f"}]}, "functions"),
        (
            [
                {"role": "tool", "content": [{"type": "input_audio"}]},
                {"role": "user", "content": "q"},
            ],
            {},
            "messages[0].content[0]",
        ),
    ],
)
def test_what_cannot_be_routed_names_the_field(messages, extra, param):
    with pytest.raises(RequestProblem) as caught:
        request(*messages, **extra).to_query("id")
    assert caught.value.param == param


def test_tool_choice_none_and_text_format_are_fine():
    query = request(
        {"role": "user", "content": "q"}, tool_choice="none", response_format={"type": "text"}
    ).to_query("id")
    assert query.question == "q"


def test_verdict_summary_and_usage_cover_every_step():
    router = scripted_router(Reply.confident("Lyon", 0.3), Reply.confident("Paris", 0.9))
    verdict = router.route("What is the capital of France?")
    info = DemurInfo.of(verdict)
    assert info.action == "accept" and info.escalated and info.model == "strong"
    assert [s.action for s in info.steps] == ["escalate", "accept"]
    usage = CompletionUsage.of(verdict)
    assert usage.completion_tokens == 2
    assert usage.prompt_tokens == sum(s.candidate.usage.input_tokens for s in verdict.steps)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_metrics_escape_label_values():
    metrics = GatewayMetrics()
    metrics.request("GET", 'we"ird\\path\n', 200, 0.01)
    text = metrics.render()
    assert 'path="we\\"ird\\\\path\\n"' in text

"""LangChain chat models and runnables as demur models: requests, settings, logprobs, errors."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import Field

from demur import (
    ConfigError,
    ContextOverflowError,
    GenerationRequest,
    Ladder,
    MeanTokenEntropy,
    MeanTokenLogprob,
    Message,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServerError,
)
from demur.integrations.langchain import (
    LangChainChatModel,
    LogprobsUnavailableWarning,
    OutputNotTextError,
    RunnableModel,
)
from demur.integrations.langchain.errors import as_model_error
from demur.integrations.langchain.messages import parse_logprobs

CHAT = GenerationRequest(
    messages=(
        Message(role="system", content="Be brief."),
        Message(role="user", content="Capital of France?"),
        Message(role="assistant", content="Paris."),
        Message(role="user", content="And of Spain?"),
    ),
    max_tokens=12,
    temperature=0.0,
    stop=("\n",),
)


def openai_logprobs(words: list[tuple[str, float]], top: int = 0) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": word,
                "logprob": math.log(p),
                "top_logprobs": [
                    {"token": word, "logprob": math.log(p)},
                    {"token": "other", "logprob": math.log(1 - p)},
                ][:top],
            }
            for word, p in words
        ]
    }


class Recording(GenericFakeChatModel):
    """A fake chat model that records each call's messages, stop and keyword arguments."""

    seen: list[tuple[list[BaseMessage], list[str] | None, dict[str, Any]]] = Field(
        default_factory=list
    )

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append((messages, stop, kwargs))
        n = kwargs.get("n", 1)
        generations = []
        for _ in range(n):
            message = next(self.messages)
            message = AIMessage(content=message) if isinstance(message, str) else message
            generations.append(ChatGeneration(message=message))
        return ChatResult(generations=generations)


class OpenAILike(Recording):
    """Declares the settings ChatOpenAI has, so the adapter passes them."""

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    n: int = 1
    logprobs: bool | None = None
    top_logprobs: int | None = None


class Failing(BaseChatModel):
    """Raises the given exceptions in turn, then answers."""

    errors: list[Any]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "failing"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="Paris"))])


def forever(*replies: AIMessage | str) -> Any:
    return itertools.chain(replies, itertools.repeat(replies[-1]))


# --- requests and settings -----------------------------------------------------------------------


async def test_requests_become_langchain_messages_and_a_prompt_one_human_message():
    model = Recording(messages=forever("Madrid"))
    adapter = LangChainChatModel(model, name="m")
    generation = await adapter.agenerate(CHAT)
    assert generation.completions[0].text == "Madrid"
    messages, stop, _ = model.seen[0]
    assert [(m.type, m.content) for m in messages] == [
        ("system", "Be brief."),
        ("human", "Capital of France?"),
        ("ai", "Paris."),
        ("human", "And of Spain?"),
    ]
    assert stop == ["\n"]
    await adapter.agenerate(GenerationRequest(prompt="Question: x\nAnswer:"))
    messages, stop, _ = model.seen[1]
    assert [(m.type, m.content) for m in messages] == [("human", "Question: x\nAnswer:")]
    assert stop is None


async def test_settings_go_only_to_models_that_declare_them():
    # A sample (temperature > 0) of an estimator's own length (12, not the adapter's 256).
    request = CHAT.model_copy(
        update={"logprobs": True, "top_logprobs": 2, "seed": 7, "temperature": 1.0}
    )
    plain = Recording(messages=forever("Madrid"))
    openai_like = OpenAILike(messages=forever("Madrid"))
    with pytest.warns(LogprobsUnavailableWarning):
        await LangChainChatModel(plain).agenerate(request)
        await LangChainChatModel(openai_like).agenerate(request)
    assert plain.seen[0][2] == {}
    assert openai_like.seen[0][2] == {
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
    }


async def test_answers_keep_the_chat_models_own_temperature_and_length():
    model = OpenAILike(messages=forever("Madrid"), max_tokens=100, temperature=0.7)
    adapter = LangChainChatModel(model)
    assert adapter.max_tokens == 100  # what the router asks for by default
    await adapter.agenerate(CHAT.model_copy(update={"max_tokens": 100}))
    assert model.seen[-1][2] == {}
    await adapter.agenerate(CHAT.model_copy(update={"max_tokens": 1}))  # e.g. P(True)
    assert model.seen[-1][2] == {"max_tokens": 1}
    explicit = LangChainChatModel(model, max_tokens=20)
    await explicit.agenerate(CHAT.model_copy(update={"max_tokens": 20}))
    assert model.seen[-1][2] == {"max_tokens": 20}


async def test_logprobs_are_asked_for_by_choice():
    request = CHAT.model_copy(update={"logprobs": True})
    forced = Recording(messages=forever("Madrid"))
    adapter = LangChainChatModel(forced, logprobs=True)
    assert adapter.supports_logprobs
    with pytest.warns(LogprobsUnavailableWarning):
        await adapter.agenerate(request)
    assert forced.seen[0][2] == {"logprobs": True}

    never = OpenAILike(messages=forever("Madrid"))
    adapter = LangChainChatModel(never, logprobs=False)
    assert not adapter.supports_logprobs
    with pytest.warns(LogprobsUnavailableWarning):
        await adapter.agenerate(request)
    assert "logprobs" not in never.seen[0][2]


async def test_logprobs_in_the_response_metadata_become_token_logprobs():
    message = AIMessage(
        content="Madrid",
        response_metadata={"logprobs": openai_logprobs([("Mad", 0.9), ("rid", 0.8)], top=2)},
    )
    adapter = LangChainChatModel(OpenAILike(messages=forever(message)))
    request = CHAT.model_copy(update={"logprobs": True, "top_logprobs": 1})
    tokens = (await adapter.agenerate(request)).completions[0].tokens
    assert [t.token for t in tokens] == ["Mad", "rid"]
    assert tokens[0].logprob == pytest.approx(math.log(0.9))
    assert [len(t.top) for t in tokens] == [1, 1]  # top_logprobs=1 keeps one alternative
    # Not asked for: not read.
    assert (await adapter.agenerate(CHAT)).completions[0].tokens is None


def test_logprob_shapes():
    legacy = {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"a": -0.1, "x": -3.0}, None],
    }
    tokens = parse_logprobs(legacy, 5)
    assert [(t.token, t.logprob, len(t.top)) for t in tokens] == [("a", -0.1, 2), ("b", -0.2, 0)]
    bare = [{"token": "a", "logprob": -0.5}]
    assert parse_logprobs(bare, 0)[0].logprob == -0.5
    assert parse_logprobs({"content": None}, 0) is None
    assert parse_logprobs({"weird": 1}, 0) is None
    assert parse_logprobs([{"token": "a"}], 0) is None  # malformed: never made-up values
    assert parse_logprobs([{"token": "a", "logprob": float("nan")}], 0) is None
    assert parse_logprobs(None, 0) is None


async def test_samples_use_the_models_own_n_in_one_call():
    model = OpenAILike(messages=forever("Madrid", "Barcelona", "Madrid"))
    request = CHAT.model_copy(update={"n": 3, "temperature": 1.0})
    generation = await LangChainChatModel(model).agenerate(request)
    assert [c.text for c in generation.completions] == ["Madrid", "Barcelona", "Madrid"]
    assert len(model.seen) == 1 and model.seen[0][2]["n"] == 3


async def test_samples_are_repeated_calls_without_n_with_offset_seeds():
    class Seeded(Recording):
        seed: int | None = None

    model = Seeded(messages=forever("Madrid"))
    request = CHAT.model_copy(update={"n": 3, "seed": 10})
    generation = await LangChainChatModel(model).agenerate(request)
    assert len(generation.completions) == 3
    assert sorted(kwargs["seed"] for _, _, kwargs in model.seen) == [10, 11, 12]


async def test_usage_finish_reason_and_response_id_are_read():
    message = AIMessage(
        content="Madrid",
        usage_metadata={"input_tokens": 20, "output_tokens": 2, "total_tokens": 22},
        response_metadata={"finish_reason": "stop", "id": "resp-1"},
    )
    generation = await LangChainChatModel(Recording(messages=forever(message))).agenerate(CHAT)
    assert generation.usage.input_tokens == 20 and generation.usage.output_tokens == 2
    assert generation.completions[0].finish_reason == "stop"
    assert generation.response_id == "resp-1"


def test_names_and_checks():
    assert LangChainChatModel(Recording(messages=forever("x"))).name == "Recording"
    with pytest.raises(ConfigError, match="wrap other runnables with RunnableModel"):
        LangChainChatModel(RunnableLambda(lambda x: x))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="wraps a LangChain Runnable"):
        RunnableModel("not a runnable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout_s"):
        RunnableModel(RunnableLambda(lambda x: x), timeout_s=0)


# --- runnables ----------------------------------------------------------------------------------


async def test_a_runnable_gets_messages_and_may_answer_with_a_str_or_text_blocks():
    seen: list[Any] = []

    def answer(messages: list[BaseMessage]) -> Any:
        seen.append(messages)
        if len(seen) == 1:
            return "Madrid"
        return AIMessage(
            content=[{"type": "reasoning", "reasoning": "..."}, {"type": "text", "text": "Madrid"}]
        )

    adapter = RunnableModel(RunnableLambda(answer), name="r")
    assert (await adapter.agenerate(CHAT)).completions[0].text == "Madrid"
    assert (await adapter.agenerate(CHAT)).completions[0].text == "Madrid"
    assert [m.type for m in seen[0]] == ["system", "human", "ai", "human"]
    generation = await adapter.agenerate(CHAT.model_copy(update={"n": 2}))
    assert len(generation.completions) == 2


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ({"answer": "Madrid"}, "returned dict, not text"),
        (42, "returned int, not text"),
        (AIMessage(content=[{"type": "image", "url": "u"}]), "without text"),
        (
            AIMessage(content="", tool_calls=[{"name": "f", "args": {}, "id": "1"}]),
            "tool calls and no text",
        ),
    ],
)
async def test_output_that_is_not_text_is_a_clear_error(output, words):
    adapter = RunnableModel(RunnableLambda(lambda messages: output), name="r")
    with pytest.raises(OutputNotTextError, match=words):
        await adapter.agenerate(CHAT)


async def test_an_empty_answer_is_still_an_answer():
    adapter = RunnableModel(RunnableLambda(lambda messages: AIMessage(content="")), name="r")
    assert (await adapter.agenerate(CHAT)).completions[0].text == ""


async def test_the_no_logprobs_warning_comes_once_per_model():
    adapter = LangChainChatModel(Recording(messages=forever("Madrid")), name="m")
    request = CHAT.model_copy(update={"logprobs": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await adapter.agenerate(request)
        await adapter.agenerate(request)
    assert [w.category for w in caught] == [LogprobsUnavailableWarning]
    assert "m (Recording) returned no token logprobs" in str(caught[0].message)


# --- errors ---------------------------------------------------------------------------------------


def status_error(name: str, status: int, message: str = "failed") -> Exception:
    error_type = type(name, (Exception,), {})
    error = error_type(message)
    error.status_code = status  # type: ignore[attr-defined]
    return error


class APITimeoutError(Exception):
    pass


class APIConnectionError(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "expected", "words"),
    [
        (TimeoutError("slow"), ModelTimeoutError, "timed out"),
        (APITimeoutError("Request timed out."), ModelTimeoutError, "APITimeoutError"),
        (status_error("APIStatusError", 429), RateLimitError, "slow down"),
        (status_error("APIStatusError", 503), ServerError, "on its side"),
        (status_error("NotFoundError", 404), ModelNotFoundError, "model name"),
        (
            status_error("BadRequestError", 400, "This model's maximum context length is 8192"),
            ContextOverflowError,
            "longer context",
        ),
        (status_error("AuthenticationError", 401), PermanentModelError, "API key"),
        (APIConnectionError("Connection error."), ServerError, "reachable"),
        (ConnectionResetError("reset"), ServerError, "reachable"),
        (ValueError("bad"), PermanentModelError, "does not retry"),
    ],
)
async def test_provider_errors_map_onto_demurs_tree(error, expected, words):
    adapter = LangChainChatModel(Failing(errors=[error]), name="m")
    with pytest.raises(expected, match=words) as caught:
        await adapter.agenerate(CHAT)
    assert caught.value.model == "m"
    assert type(error).__name__ in str(caught.value)
    assert type(caught.value.__cause__) is type(error)  # the provider's error stays attached


def test_demur_errors_pass_through_the_mapping():
    error = RateLimitError("slow down", model="x")
    assert as_model_error(error, "m", "M") is error


def test_transient_errors_are_retried_and_permanent_ones_recorded():
    flaky = Failing(errors=[status_error("APIStatusError", 503)])
    router = Router(
        [LangChainChatModel(flaky, name="m")],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.0),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002),
    )
    with pytest.warns(LogprobsUnavailableWarning):
        verdict = router.route("Capital of France?")
    assert flaky.calls == 2 and verdict.steps[0].retries == 1

    broken = Failing(errors=[ValueError("bad request")] * 3)
    router = Router(
        [LangChainChatModel(broken, name="m")], estimators=[MeanTokenLogprob()], policy=Ladder(0.0)
    )
    verdict = router.route("Capital of France?")
    assert broken.calls == 1
    assert verdict.status == "abstained"
    assert verdict.steps[0].error_type == "PermanentModelError"
    assert "ValueError: bad request" in verdict.steps[0].error


async def test_a_plain_router_over_the_adapter_scores_with_top_k_logprobs():
    message = AIMessage(
        content="Madrid",
        response_metadata={"logprobs": openai_logprobs([("Madrid", 0.9)], top=2)},
    )
    router = Router(
        [LangChainChatModel(OpenAILike(messages=forever(message)), name="m")],
        estimators=[MeanTokenLogprob(), MeanTokenEntropy(top_k=2)],
        policy=Ladder(0.5),
    )
    verdict = await router.aroute("Capital of Spain?")
    assert verdict.status == "answered" and verdict.answer == "Madrid"
    assert [s.status for s in verdict.steps[0].scores] == ["ok", "ok"]


def test_model_error_is_the_root_of_what_adapters_raise():
    assert issubclass(OutputNotTextError, ModelError) and issubclass(
        OutputNotTextError, ConfigError
    )

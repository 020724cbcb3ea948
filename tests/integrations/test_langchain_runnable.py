"""The gating Runnable: every call form, inputs and outputs, streaming, callbacks, bad input."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from demur import (
    Abstain,
    ConfigError,
    InvalidQueryError,
    Ladder,
    MeanTokenLogprob,
    Reply,
    RetryPolicy,
    Router,
    ScriptedModel,
    Verdict,
)
from demur.integrations.langchain import (
    VERDICT_EVENT,
    DemurRunnable,
    LangChainChatModel,
    LogprobsUnavailableWarning,
    OutputNotTextError,
    RunnableModel,
    gate,
)
from tests.integrations.langchain_messages import reply

QUESTION = "What is the capital of France?"


def chat(*messages: AIMessage) -> GenericFakeChatModel:
    """A fake chat model that answers with the given messages, the last one forever."""
    return GenericFakeChatModel(messages=itertools.chain(messages, itertools.repeat(messages[-1])))


def weak_strong(weak_p: float = 0.3, strong_p: float = 0.9) -> DemurRunnable:
    return gate(
        chat(reply("Lyon", weak_p)),
        fallback=chat(reply("Paris", strong_p)),
        estimators=[MeanTokenLogprob()],
        threshold=0.6,
    )


class Recorder(BaseCallbackHandler):
    """Records the callback events a run produces."""

    def __init__(self) -> None:
        self.chains: list[tuple[str, UUID, UUID | None, list[str], dict[str, Any]]] = []
        self.chat_starts: list[tuple[list[Any], UUID | None, list[str]]] = []
        self.tokens: list[str] = []
        self.custom: list[tuple[str, Any, UUID]] = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw):
        self.chains.append(
            (
                kw.get("name") or "",
                run_id,
                parent_run_id,
                kw.get("tags") or [],
                kw.get("metadata") or {},
            )
        )

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
        self.chat_starts.append((messages[0], parent_run_id, kw.get("tags") or []))

    def on_llm_new_token(self, token, **kw):
        self.tokens.append(token)

    def on_custom_event(self, name, data, *, run_id, **kw):
        self.custom.append((name, data, run_id))


# --- answers ---------------------------------------------------------------------------------


def test_a_doubtful_answer_is_replaced_by_the_fallbacks():
    assert weak_strong().invoke(QUESTION) == "Paris"


def test_a_confident_answer_is_released_without_asking_the_fallback():
    strong = chat(reply("Paris", 0.9))
    gated = gate(
        chat(reply("Paris", 0.95)), fallback=strong, estimators=[MeanTokenLogprob()], threshold=0.6
    )
    recorder = Recorder()
    out = gated.invoke(QUESTION, config={"callbacks": [recorder]})
    assert out == "Paris"
    assert len(recorder.chat_starts) == 1  # only the primary was asked


def test_with_verdict_returns_the_output_and_the_whole_verdict():
    gated = gate(chat(reply("Lyon", 0.3)), estimators=[MeanTokenLogprob()], with_verdict=True)
    out = gated.invoke(QUESTION)
    verdict = out["verdict"]
    assert isinstance(verdict, Verdict)
    assert verdict.status == "abstained"
    assert out["output"] == verdict.message == "I am not confident enough to answer this question."
    assert verdict.steps[0].candidate.text == "Lyon"
    assert "0.300 < threshold 0.500" in verdict.steps[0].decision.reason


def test_an_abstention_returns_the_configured_message():
    gated = gate(
        chat(reply("Lyon", 0.3)),
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain("Please ask the help desk.")]),
    )
    assert gated.invoke(QUESTION) == "Please ask the help desk."


def test_messages_in_give_an_ai_message_out_with_the_verdict_in_its_metadata():
    out = weak_strong().invoke([("system", "Be brief."), ("human", QUESTION)])
    assert isinstance(out, AIMessage)
    assert out.content == "Paris"
    summary = out.response_metadata["demur"]
    assert summary["status"] == "answered"
    assert summary["model"] == "fallback"
    assert summary["confidence"] == pytest.approx(0.9)
    assert summary["steps"] == 2


def test_messages_reach_the_model_as_they_are_and_a_str_as_one_human_message():
    recorder = Recorder()
    gated = gate(chat(reply("Paris", 0.9)), estimators=[MeanTokenLogprob()])
    gated.invoke(
        [("system", "Be brief."), ("human", "Hi"), ("ai", "Hello!"), ("human", QUESTION)],
        config={"callbacks": [recorder]},
    )
    gated.invoke(QUESTION, config={"callbacks": [recorder]})
    conversation, single = recorder.chat_starts[0][0], recorder.chat_starts[1][0]
    assert [(m.type, m.content) for m in conversation] == [
        ("system", "Be brief."),
        ("human", "Hi"),
        ("ai", "Hello!"),
        ("human", QUESTION),
    ]
    assert [(m.type, m.content) for m in single] == [("human", QUESTION)]


def test_a_dict_with_context_puts_the_passages_in_the_prompt():
    recorder = Recorder()
    gated = gate(chat(reply("Paris", 0.9)), estimators=[MeanTokenLogprob()])
    out = gated.invoke(
        {"question": QUESTION, "context": ["Paris is the capital of France."]},
        config={"callbacks": [recorder]},
    )
    assert out == "Paris"
    (sent,) = recorder.chat_starts[0][0]
    assert "Paris is the capital of France." in sent.content and QUESTION in sent.content
    assert gated.invoke({"input": QUESTION}) == "Paris"


def test_demur_models_can_be_gated_and_keep_their_names():
    gated = gate(
        ScriptedModel("weak", [Reply.confident("Lyon", 0.2)]),
        fallback=chat(reply("Paris", 0.9)),
        estimators=[MeanTokenLogprob()],
        with_verdict=True,
    )
    verdict = gated.invoke(QUESTION)["verdict"]
    assert [s.model for s in verdict.steps] == ["weak", "fallback"]
    assert verdict.answer == "Paris"


def test_a_router_built_by_hand_can_be_wrapped():
    router = Router(
        [LangChainChatModel(chat(reply("Paris", 0.9)), name="gpt")],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5),
    )
    assert DemurRunnable(router).invoke(QUESTION) == "Paris"


# --- every call form ---------------------------------------------------------------------------


async def test_ainvoke():
    assert await weak_strong().ainvoke(QUESTION) == "Paris"


def test_batch_keeps_the_order_and_gates_each_input():
    gated = gate(
        ScriptedModel(
            "weak",
            {"France": Reply.confident("Paris", 0.9), "Spain": Reply.confident("Lisbon", 0.2)},
        ),
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain("unsure")]),
    )
    assert gated.batch(["Capital of France?", "Capital of Spain?"]) == ["Paris", "unsure"]
    assert gated.batch([]) == []


async def test_abatch():
    gated = weak_strong()
    assert await gated.abatch([QUESTION, QUESTION, QUESTION]) == ["Paris"] * 3


def test_batch_returns_exceptions_when_asked():
    out = weak_strong().batch([QUESTION, 42], return_exceptions=True)
    assert out[0] == "Paris"
    assert isinstance(out[1], InvalidQueryError)


def test_stream_releases_only_the_gated_answer_in_one_chunk():
    chunks = list(weak_strong().stream(QUESTION))
    assert chunks == ["Paris"]


def test_stream_of_messages_yields_an_ai_message_chunk():
    (chunk,) = list(weak_strong().stream([("human", QUESTION)]))
    assert isinstance(chunk, AIMessageChunk)
    assert chunk.content == "Paris"
    assert chunk.response_metadata["demur"]["model"] == "fallback"


async def test_astream_releases_only_the_gated_answer():
    chunks = [chunk async for chunk in weak_strong().astream(QUESTION)]
    assert chunks == ["Paris"]


def test_a_streamed_chain_never_sees_the_ungated_answer():
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | weak_strong() | StrOutputParser()
    recorder = Recorder()
    chunks = list(chain.stream({"question": QUESTION}, config={"callbacks": [recorder]}))
    assert "".join(chunks) == "Paris"
    assert all("Lyon" not in c for c in chunks)


async def test_astream_events_show_the_verdict_and_no_ungated_token():
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | weak_strong() | StrOutputParser()
    events = [e async for e in chain.astream_events({"question": QUESTION}, version="v2")]
    assert "Lyon" not in repr([e["data"] for e in events if e["event"] != "on_custom_event"])
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream"]
    assert "Paris" in streamed
    (verdict_event,) = [e for e in events if e["event"] == "on_custom_event"]
    assert verdict_event["name"] == VERDICT_EVENT
    assert verdict_event["data"].answer == "Paris"
    assert verdict_event["data"].steps[0].candidate.text == "Lyon"  # the record, not the stream
    assert not [e for e in events if e["event"] == "on_chat_model_stream"]


def test_it_composes_with_the_pipe_operator_on_both_sides():
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    chain = prompt | weak_strong() | StrOutputParser() | RunnableLambda(str.upper)
    assert chain.invoke({"question": QUESTION}) == "PARIS"


# --- config and callbacks ----------------------------------------------------------------------


def test_callbacks_tags_and_metadata_reach_the_gate_and_every_model_call():
    recorder = Recorder()
    gated = weak_strong().with_config(run_name="gate")
    out = gated.invoke(
        QUESTION,
        config={"callbacks": [recorder], "tags": ["t1"], "metadata": {"user": "u1"}},
    )
    assert out == "Paris"
    ((name, run_id, parent, tags, metadata),) = recorder.chains
    assert name == "gate" and parent is None and "t1" in tags and metadata["user"] == "u1"
    assert len(recorder.chat_starts) == 2  # the primary, then the fallback
    assert all(p == run_id for _, p, _ in recorder.chat_starts)
    assert all("t1" in t for _, _, t in recorder.chat_starts)
    ((event, verdict, event_run),) = recorder.custom
    assert event == VERDICT_EVENT and event_run == run_id
    assert isinstance(verdict, Verdict) and verdict.model == "fallback"


async def test_callbacks_are_propagated_in_async_calls_too():
    recorder = Recorder()
    assert await weak_strong().ainvoke(QUESTION, config={"callbacks": [recorder]}) == "Paris"
    ((_, run_id, _, _, _),) = recorder.chains
    assert [p for _, p, _ in recorder.chat_starts] == [run_id, run_id]
    assert [name for name, _, _ in recorder.custom] == [VERDICT_EVENT]


def test_each_batch_input_gets_its_own_run():
    recorder = Recorder()
    weak_strong().batch([QUESTION, QUESTION], config={"callbacks": [recorder]})
    gate_runs = {run_id for _, run_id, _, _, _ in recorder.chains}
    assert len(gate_runs) == 2
    assert {p for _, p, _ in recorder.chat_starts} == gate_runs


# --- bad input and bad output ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (42, "got int"),
        ("  ", "the question is empty"),
        ({"topic": "x"}, "needs a 'question'"),
        ({"question": 3}, "must be a str"),
        ([], "no human message"),
        ([("system", "Be brief.")], "no human message"),
        (
            [HumanMessage("hi"), ToolMessage("42", tool_call_id="1")],
            "DemurMiddleware",
        ),
        ([HumanMessage(content=[{"type": "image", "url": "https://x/y.png"}])], "image"),
    ],
)
def test_bad_input_raises_a_clear_error(value, words):
    with pytest.raises(InvalidQueryError, match=words):
        weak_strong().invoke(value)


def test_a_runnable_that_returns_a_dict_is_a_clear_error():
    gated = gate(
        RunnableLambda(lambda messages: {"answer": "Paris"}), estimators=[MeanTokenLogprob()]
    )
    with pytest.raises(OutputNotTextError, match=r"primary \(.*\) returned dict, not text"):
        gated.invoke(QUESTION)


async def test_a_model_that_answers_with_tool_calls_is_a_clear_error():
    tool_call = reply("", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])
    gated = gate(
        chat(tool_call), fallback=chat(reply("Paris", 0.9)), estimators=[MeanTokenLogprob()]
    )
    with pytest.raises(OutputNotTextError, match="tool calls"):
        await gated.ainvoke(QUESTION)


def test_a_chain_ending_in_a_parser_is_gated_like_a_model():
    runnable = chat(reply("Paris", 0.9)) | StrOutputParser()
    gated = gate(runnable, estimators=[MeanTokenLogprob()], with_verdict=True)
    with pytest.warns(LogprobsUnavailableWarning):
        verdict = gated.invoke(QUESTION)["verdict"]
    # A str carries no logprobs: the estimator cannot score it, so the gate abstains.
    assert verdict.status == "abstained"
    assert verdict.steps[0].scores[0].status == "unavailable"


def test_without_logprobs_the_policy_falls_back_and_a_warning_says_why():
    gated = gate(
        chat(reply("Lyon")),
        fallback=chat(reply("Paris", 0.9)),
        estimators=[MeanTokenLogprob()],
        with_verdict=True,
    )
    with pytest.warns(LogprobsUnavailableWarning, match="returned no token logprobs"):
        out = gated.invoke(QUESTION)
    first, second = out["verdict"].steps
    assert first.scores[0].status == "unavailable"
    assert "needs token logprobs" in first.scores[0].detail
    assert first.decision.reason.startswith("no estimator could score the answer")
    assert out["output"] == "Paris" and second.model == "fallback"


async def test_a_hanging_model_is_cut_off_and_the_route_moves_on():
    async def hang(messages: Any) -> str:
        await asyncio.sleep(30)
        return "never"

    gated = gate(
        RunnableModel(RunnableLambda(hang), name="slow", timeout_s=0.05),
        fallback=chat(reply("Paris", 0.9)),
        estimators=[MeanTokenLogprob()],
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.002),
        with_verdict=True,
    )
    started = time.perf_counter()
    out = await gated.ainvoke(QUESTION)
    assert time.perf_counter() - started < 5
    assert out["output"] == "Paris"
    assert out["verdict"].steps[0].error_type == "ModelTimeoutError"


class SyncOrAsync(GenericFakeChatModel):
    """Says which of LangChain's APIs answered: the sync one or the async one."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=reply("sync", 0.9))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=reply("async", 0.9))])


async def test_sync_calls_use_the_sync_api_and_async_calls_the_async_one():
    gated = gate(SyncOrAsync(messages=iter([])), estimators=[MeanTokenLogprob()])
    assert await gated.ainvoke(QUESTION) == "async"
    assert await gated.abatch([QUESTION]) == ["async"]
    assert [c async for c in gated.astream(QUESTION)] == ["async"]
    assert await asyncio.to_thread(gated.invoke, QUESTION) == "sync"
    assert await asyncio.to_thread(gated.batch, [QUESTION, QUESTION]) == ["sync", "sync"]
    assert await asyncio.to_thread(lambda: list(gated.stream(QUESTION))) == ["sync"]


def test_a_hanging_sync_model_is_cut_off_too():
    release = threading.Event()

    def hang(messages: Any) -> str:
        release.wait(30)
        return "never"

    gated = gate(
        RunnableModel(RunnableLambda(hang), name="slow", timeout_s=0.05),
        fallback=chat(reply("Paris", 0.9)),
        estimators=[MeanTokenLogprob()],
        retry=RetryPolicy(max_attempts=1),
    )
    started = time.perf_counter()
    try:
        assert gated.invoke(QUESTION) == "Paris"
    finally:
        release.set()
    assert time.perf_counter() - started < 5


def test_sync_invoke_works_inside_a_running_event_loop():
    async def main() -> str:
        return weak_strong().invoke(QUESTION)  # e.g. sync code called from a notebook cell

    assert asyncio.run(main()) == "Paris"


def test_gate_refuses_what_it_cannot_wrap():
    with pytest.raises(ConfigError, match="got int"):
        gate(42, estimators=[MeanTokenLogprob()])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="wraps a demur Router"):
        DemurRunnable("router")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prompt="):
        gate(chat(reply("x")), estimators=[], prompts={})


def test_the_gate_does_not_import_the_agent_stack_until_asked():
    code = (
        "import sys\n"
        "import demur\n"
        "assert 'langchain_core' not in sys.modules\n"
        "import demur.integrations.langchain as lc\n"
        "assert 'langgraph' not in sys.modules and 'langchain.agents' not in sys.modules\n"
        "lc.DemurMiddleware\n"
        "assert 'langchain.agents' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

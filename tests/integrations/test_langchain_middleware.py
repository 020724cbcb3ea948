"""The agent middleware in real `create_agent` runs, on fake chat models."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.errors import GraphInterrupt
from pydantic import Field

from demur import (
    AskHuman,
    ConfigError,
    Escalate,
    GenerationRequest,
    Ladder,
    MeanTokenLogprob,
    Message,
    Needs,
    Score,
    SqliteQueue,
)
from demur.bases import EstimatorBase
from demur.estimators.base import Attempt
from demur.estimators.consistency import SampleAgreement
from demur.integrations.langchain import DemurMiddleware
from tests.integrations.langchain_messages import reply

QUESTION = "What is the capital of France?"


SEARCH_CALL = reply("", tool_calls=[{"name": "search", "args": {"q": "France"}, "id": "c1"}])


class AgentChat(GenericFakeChatModel):
    """A fake chat model an agent can bind tools to; it records what it was sent."""

    seen: list[tuple[list[BaseMessage], dict[str, Any]]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(**kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append((messages, kwargs))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


class LogprobChat(AgentChat):
    """Declares ChatOpenAI's logprob and temperature settings."""

    logprobs: bool | None = None
    top_logprobs: int | None = None
    temperature: float | None = None


def model(*replies: AIMessage, cls: type[AgentChat] = AgentChat) -> AgentChat:
    return cls(messages=itertools.chain(replies, itertools.repeat(replies[-1])))


@tool
def search(q: str) -> str:
    """Search the encyclopaedia."""
    return "Paris is the capital of France."


def agent(weak: AgentChat, middleware: DemurMiddleware, tools: list[Any] | None = None) -> Any:
    return create_agent(weak, tools=tools or [], middleware=[middleware])


def final(result: dict[str, Any]) -> AIMessage:
    message = result["messages"][-1]
    assert isinstance(message, AIMessage)
    return message


def test_a_confident_answer_passes_through_with_its_verdict():
    strong = model(reply("Rome", 0.99))
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    answer = final(
        agent(model(reply("Paris", 0.9)), gate).invoke({"messages": [("human", QUESTION)]})
    )
    assert answer.content == "Paris"
    assert answer.response_metadata["demur"]["status"] == "answered"
    assert answer.response_metadata["demur"]["model"] == "agent"
    assert answer.response_metadata["demur"]["confidence"] == pytest.approx(0.9)
    assert "logprobs" in answer.response_metadata  # the rest of the response is kept
    assert strong.seen == []


def test_tool_calls_pass_and_a_doubtful_answer_is_made_again_by_the_fallback():
    weak = model(SEARCH_CALL, reply("Lyon", 0.3))
    strong = model(reply("Paris", 0.9))
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    result = agent(weak, gate, tools=[search]).invoke({"messages": [("human", QUESTION)]})
    kinds = [type(m).__name__ for m in result["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert result["messages"][1].tool_calls[0]["name"] == "search"
    assert "demur" not in result["messages"][1].response_metadata  # not scored
    answer = final(result)
    assert answer.content == "Paris"
    assert answer.response_metadata["demur"]["model"] == "fallback"
    assert answer.response_metadata["demur"]["steps"] == 2
    # The fallback saw the whole turn, tool result included.
    ((sent, _),) = strong.seen
    assert any(isinstance(m, ToolMessage) and "Paris is the capital" in m.content for m in sent)


async def test_the_async_agent_is_gated_the_same_way():
    weak = model(SEARCH_CALL, reply("Lyon", 0.3))
    strong = model(reply("Paris", 0.9))
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    result = await agent(weak, gate, tools=[search]).ainvoke({"messages": [("human", QUESTION)]})
    assert final(result).content == "Paris"
    assert final(result).response_metadata["demur"]["model"] == "fallback"


def test_without_a_fallback_a_doubtful_answer_becomes_the_abstention():
    gate = DemurMiddleware(
        estimators=[MeanTokenLogprob()], threshold=0.6, abstain_message="Ask the help desk."
    )
    answer = final(
        agent(model(reply("Lyon", 0.3)), gate).invoke({"messages": [("human", QUESTION)]})
    )
    assert answer.content == "Ask the help desk."
    assert answer.response_metadata["demur"]["status"] == "abstained"


def test_a_person_can_take_the_question(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db")
    gate = DemurMiddleware(
        estimators=[MeanTokenLogprob()], policy=Ladder(0.6, rungs=[AskHuman()]), queue=queue
    )
    answer = final(
        agent(model(reply("Lyon", 0.3)), gate).invoke({"messages": [("human", QUESTION)]})
    )
    summary = answer.response_metadata["demur"]
    assert summary["status"] == "pending"
    ticket = queue.get(summary["ticket_id"])
    assert ticket.question == QUESTION
    assert [c.text for c in ticket.candidates] == ["Lyon"]


def test_logprobs_are_requested_from_models_that_take_them():
    weak = model(reply("Paris", 0.9), cls=LogprobChat)
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6)
    agent(weak, gate).invoke({"messages": [("human", QUESTION)]})
    assert weak.seen[0][1]["logprobs"] is True

    plain = model(reply("Paris", 0.9))
    agent(plain, DemurMiddleware(estimators=[MeanTokenLogprob()])).invoke(
        {"messages": [("human", QUESTION)]}
    )
    assert "logprobs" not in plain.seen[0][1]


def test_each_model_of_the_turn_gets_the_logprob_settings_it_takes():
    weak = model(reply("Lyon", 0.3), cls=LogprobChat)
    strong = model(reply("Paris", 0.9))  # no `logprobs` field: must not get the argument
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    answer = final(agent(weak, gate).invoke({"messages": [("human", QUESTION)]}))
    assert answer.content == "Paris"
    assert weak.seen[0][1]["logprobs"] is True
    assert "logprobs" not in strong.seen[0][1]


def test_samples_are_more_calls_of_the_same_turn_at_the_sampling_temperature():
    weak = model(reply("Paris"), reply("Paris"), reply("Paris"), cls=LogprobChat)
    gate = DemurMiddleware(estimators=[SampleAgreement(samples=2)], threshold=0.6)
    answer = final(agent(weak, gate).invoke({"messages": [("human", QUESTION)]}))
    assert answer.content == "Paris"
    assert answer.response_metadata["demur"]["confidence"] == pytest.approx(1.0)
    assert len(weak.seen) == 3
    assert [kwargs.get("temperature") for _, kwargs in weak.seen] == [None, 1.0, 1.0]
    assert all(m[-1].content == QUESTION for m, _ in weak.seen)


class AskBack(EstimatorBase):
    """An estimator that asks the model a question of its own."""

    name = "ask_back"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        request = GenerationRequest(
            messages=(Message(role="user", content=f"Is '{attempt.candidate.text}' right?"),)
        )
        said = (await attempt.ask(request)).completions[0].text
        confidence = 1.0 if said == "yes" else 0.0
        return Score(estimator=self.name, value=confidence, confidence=confidence)


def test_an_estimators_own_question_goes_straight_to_the_chat_model():
    weak = model(reply("Paris"), reply("yes"))
    gate = DemurMiddleware(estimators=[AskBack()], threshold=0.6)
    answer = final(agent(weak, gate).invoke({"messages": [("human", QUESTION)]}))
    assert answer.content == "Paris"
    assert answer.response_metadata["demur"]["confidence"] == 1.0
    asked, _ = weak.seen[1]
    assert [m.content for m in asked] == ["Is 'Paris' right?"]


def test_a_fallback_that_fails_leaves_the_abstention():
    class Broken(AgentChat):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise ValueError("the provider rejected the request")

    gate = DemurMiddleware(
        estimators=[MeanTokenLogprob()], threshold=0.6, fallback=Broken(messages=iter([]))
    )
    answer = final(
        agent(model(reply("Lyon", 0.3)), gate).invoke({"messages": [("human", QUESTION)]})
    )
    assert answer.response_metadata["demur"]["status"] == "abstained"


def test_a_fallback_that_calls_tools_is_handed_back_to_the_agent(tmp_path):
    strong = model(SEARCH_CALL, reply("Paris", 0.9))
    weak = model(reply("Lyon", 0.3), reply("Paris", 0.95))
    queue = SqliteQueue(tmp_path / "queue.db")
    gate = DemurMiddleware(
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Escalate("fallback"), AskHuman()]),
        fallback=strong,
        queue=queue,
    )
    result = agent(weak, gate, tools=[search]).invoke({"messages": [("human", QUESTION)]})
    assert result["messages"][1].tool_calls[0]["name"] == "search"
    assert final(result).content == "Paris"
    assert final(result).response_metadata["demur"]["model"] == "agent"
    assert queue.tickets() == []  # the tool calls were not an answer to hand to a person


def test_errors_of_the_agents_own_call_reach_the_agent_untouched():
    class Broken(AgentChat):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise KeyError("boom")

    gate = DemurMiddleware(estimators=[MeanTokenLogprob()])
    with pytest.raises(KeyError, match="boom"):
        agent(Broken(messages=iter([])), gate).invoke({"messages": [("human", QUESTION)]})


async def test_langgraph_interrupts_on_a_fallback_call_pass_through():
    strong = model(reply("Paris", 0.9))
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    request = ModelRequest(model=model(reply("Lyon", 0.3)), messages=[HumanMessage(QUESTION)])

    def handler(req: ModelRequest[Any]) -> ModelResponse[Any]:
        if req.model is strong:
            raise GraphInterrupt(())
        return ModelResponse(result=[req.model.invoke(req.messages)])

    async def ahandler(req: ModelRequest[Any]) -> ModelResponse[Any]:
        return handler(req)

    with pytest.raises(GraphInterrupt):
        gate.wrap_model_call(request, handler)
    with pytest.raises(GraphInterrupt):
        await gate.awrap_model_call(request, ahandler)


def test_inner_middleware_runs_for_the_fallback_call_too():
    calls: list[str] = []

    class Count(AgentMiddleware):
        def wrap_model_call(self, request, handler):
            calls.append(type(request.model).__name__ + ":" + str(id(request.model)))
            return handler(request)

    weak, strong = model(reply("Lyon", 0.3)), model(reply("Paris", 0.9))
    gate = DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong)
    create_agent(weak, middleware=[gate, Count()]).invoke({"messages": [("human", QUESTION)]})
    assert calls == [f"AgentChat:{id(weak)}", f"AgentChat:{id(strong)}"]


def test_checks():
    with pytest.raises(ConfigError, match="chat model"):
        DemurMiddleware(estimators=[], fallback="gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prompts"):
        DemurMiddleware(estimators=[], prompts={})

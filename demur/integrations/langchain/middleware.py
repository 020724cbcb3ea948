"""Agent middleware that gates an agent's answers (`langchain.agents.create_agent`).

    agent = create_agent(
        ChatOpenAI(model="gpt-4o-mini"),
        tools=[search],
        middleware=[DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6,
                                    fallback=ChatOpenAI(model="gpt-4o"))],
    )

Each model call of the agent goes through `wrap_model_call` / `awrap_model_call`:

1. The agent's model answers as usual (with `logprobs=True, top_logprobs=k` added to its
   settings when the estimators need logprobs and the model has a `logprobs` field, or always
   with `logprobs=True`). Its errors reach the agent untouched.
2. A response with tool calls is not an answer yet: it goes back to the agent unscored.
3. A text answer is routed: demur scores it, and the policy accepts it, escalates (the call
   is made again with the `fallback` model, through the rest of the middleware stack and with
   the same tools), hands it to a person, or abstains. The agent receives the accepted
   response, or an `AIMessage` with the abstention (or pending) message. Every returned
   message carries the verdict's summary in `response_metadata["demur"]`. A fallback model
   that answers with tool calls is passed back to the agent as it is, and the route ends there
   (no further rung, such as a person, is taken for it).

Estimators that need samples get them from the same agent call at the sampling temperature
(passed as a model setting to models with a `temperature` field); estimators that ask a model
themselves (a judge, P(True)) call the chat model directly, without tools. The route's spans
nest under the caller's active span; the agent's first call happens before the `demur.route`
span opens. In synchronous agents the calls demur makes run on worker threads through the sync
API, in asynchronous agents through the async API; either way demur's per-call timeout
(`timeout_s`) cuts off a call that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from demur.errors import (
    AgentToolCalls,
    ConfigError,
    MissingDependencyError,
    PermanentModelError,
    RouteError,
)

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # the agent stack (langchain, langgraph) is not installed
    missing = (exc.name or "").split(".")[0]
    if missing not in ("langchain", "langgraph"):
        raise
    raise MissingDependencyError(
        missing, "langchain", "DemurMiddleware (agent middleware)"
    ) from None
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from demur.bases import ModelBase
from demur.integrations.langchain._sync import run_sync
from demur.integrations.langchain.chat_model import LangChainChatModel, blocking_calls
from demur.integrations.langchain.errors import (
    as_model_error,
    is_control_flow,
    passed_through,
)
from demur.integrations.langchain.messages import (
    finish_reason,
    last_human_text,
    message_logprobs,
    message_usage,
)
from demur.integrations.langchain.runnable import verdict_summary
from demur.policies.basic import FirstOf, HandBackOn
from demur.policies.ladder import Ladder
from demur.protocols import NOTHING, Estimator, Needs, Policy
from demur.router.router import Router
from demur.types import (
    Abstain,
    Completion,
    Escalate,
    Generation,
    GenerationRequest,
    Message,
    Query,
    Usage,
    Verdict,
)

# The request the router sends for "the agent's own call"; an estimator's request never
# looks like it, so the models below can tell the two apart.
_AGENT_TURN = (Message(role="user", content="<the agent's own model call>"),)


class _AgentPrompt:
    def render(self, query: Query) -> GenerationRequest:
        return GenerationRequest(messages=_AGENT_TURN)


@dataclass(frozen=True)
class _Logprobs:
    """Whether, and how many, logprobs to ask each chat model for."""

    needs: Needs
    option: bool | Literal["auto"]

    def settings(self, model: BaseChatModel, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The model settings, with the logprob arguments this model should get."""
        result = dict(settings)
        if not self.needs.logprobs or self.option is False:
            return result
        if self.option == "auto" and "logprobs" not in type(model).model_fields:
            # Set for another model of the turn (the agent's, before an escalation).
            result.pop("logprobs", None)
            result.pop("top_logprobs", None)
            return result
        result["logprobs"] = True
        if self.needs.top_logprobs:
            result["top_logprobs"] = self.needs.top_logprobs
        return result


@dataclass
class _AgentCall:
    """One intercepted model call of the agent, as the route's models see it."""

    request: ModelRequest[Any]
    handler: Callable[[ModelRequest[Any]], Any]
    is_async: bool
    first: ModelResponse[Any] | None
    answers: dict[str, ModelResponse[Any]] = field(default_factory=dict)
    passed: ModelResponse[Any] | None = None


_CURRENT: contextvars.ContextVar[_AgentCall | None] = contextvars.ContextVar(
    "demur_agent_call", default=None
)


class _AgentModel(ModelBase):
    """A router model that answers by running the agent's call (with another chat model)."""

    provider = "langchain"

    def __init__(
        self,
        name: str,
        chat_model: BaseChatModel | None,
        timeout_s: float,
        logprobs: _Logprobs,
    ) -> None:
        self.name = name
        self.chat_model = chat_model
        self.timeout_s = timeout_s
        self.logprobs = logprobs
        self.default_prompt = _AgentPrompt()
        self._direct: dict[int, LangChainChatModel] = {}

    async def agenerate(self, request: GenerationRequest) -> Generation:
        call = _CURRENT.get()
        if call is None:
            raise PermanentModelError(
                f"model '{self.name}' answers only inside DemurMiddleware's model calls",
                model=self.name,
            )
        if request.messages != _AGENT_TURN:
            # An estimator's own question (a judge, P(True)): straight to the chat model.
            chat_model = self.chat_model or call.request.model
            direct = self._direct.get(id(chat_model))
            if direct is None or direct.chat_model is not chat_model:
                direct = LangChainChatModel(
                    chat_model, name=self.name, logprobs=self.logprobs.option
                )
                self._direct[id(chat_model)] = direct
            return await direct.agenerate(request)
        main = request.n == 1 and request.temperature == 0.0
        if main and self.chat_model is None and call.first is not None:
            responses = [call.first]
            call.first = None
        else:
            agent_request = self._request(call, request)
            responses = [await self._run(call, agent_request) for _ in range(request.n)]
        completions, usage = [], Usage()
        for response in responses:
            message = _answer(response)
            if main and (message is None or message.tool_calls):
                call.passed = response
                raise AgentToolCalls(
                    f"{self.name} answered with tool calls; the agent gets them as they are",
                    model=self.name,
                )
            if message is None:  # a sample without an AI message says nothing
                completions.append(Completion(text=""))
                continue
            tokens = message_logprobs(message, request.top_logprobs) if request.logprobs else None
            usage = usage + message_usage(message)
            completions.append(
                Completion(
                    text=str(message.text), tokens=tokens, finish_reason=finish_reason(message)
                )
            )
        if main:
            call.answers[self.name] = responses[0]
        return Generation(model=self.name, completions=tuple(completions), usage=usage)

    def _request(self, call: _AgentCall, request: GenerationRequest) -> ModelRequest[Any]:
        model = self.chat_model or call.request.model
        settings = self.logprobs.settings(model, call.request.model_settings)
        if request.temperature != 0.0 and "temperature" in type(model).model_fields:
            settings["temperature"] = request.temperature
        return call.request.override(model=model, model_settings=settings)

    async def _run(self, call: _AgentCall, request: ModelRequest[Any]) -> ModelResponse[Any]:
        try:
            if call.is_async:
                result = await call.handler(request)
            else:
                result = await asyncio.to_thread(call.handler, request)
        except Exception as exc:
            if is_control_flow(exc):
                raise passed_through(exc) from exc
            raise as_model_error(exc, self.name, type(request.model).__name__) from exc
        if isinstance(result, AIMessage):
            return ModelResponse(result=[result])
        if isinstance(result, ModelResponse):
            return result
        return result.model_response  # type: ignore[no-any-return]


class DemurMiddleware(AgentMiddleware):
    """Gates an agent's answers: scores each, and accepts, escalates, or abstains by policy.

        DemurMiddleware(estimators=[MeanTokenLogprob()], threshold=0.6, fallback=strong_llm)

    Without a `policy`, answers with confidence >= `threshold` pass; below it the call is made
    again with `fallback` when there is one, then the agent gets the abstention message. In
    verdicts and traces the agent's model is `name` and the fallback `fallback_name`. Other
    keyword arguments go to `Router` (queue, budget, retry, sampling, calibrator,
    tracer_provider, abstain_message, ...). See the module docstring for the details.
    """

    def __init__(
        self,
        *,
        estimators: Sequence[Estimator],
        fallback: BaseChatModel | None = None,
        policy: Policy | None = None,
        threshold: float = 0.5,
        logprobs: bool | Literal["auto"] = "auto",
        name: str = "agent",
        fallback_name: str = "fallback",
        timeout_s: float = 60.0,
        **router_options: Any,
    ) -> None:
        super().__init__()
        if fallback is not None and not isinstance(fallback, BaseChatModel):
            raise ConfigError(
                f"DemurMiddleware's fallback must be a LangChain chat model, got "
                f"{type(fallback).__name__}"
            )
        if "prompts" in router_options:
            raise ConfigError("DemurMiddleware sets the models' prompts itself")
        needs = NOTHING
        for estimator in estimators:
            needs = needs.merge(estimator.needs)
        self.logprobs = _Logprobs(needs, logprobs)
        models = [_AgentModel(name, None, timeout_s, self.logprobs)]
        if fallback is not None:
            models.append(_AgentModel(fallback_name, fallback, timeout_s, self.logprobs))
        if policy is None:
            rungs = [Escalate(fallback_name)] if fallback is not None else [Abstain()]
            policy = Ladder(threshold, rungs=rungs)
        self.router = Router(
            models,
            # Tool calls go back to the agent: no further rung (a person, say) is taken for them.
            policy=FirstOf(
                HandBackOn(
                    AgentToolCalls, "{model} answered with tool calls; handed back to the agent"
                ),
                policy,
            ),
            estimators=estimators,
            prompts={m.name: _AgentPrompt() for m in models},
            **router_options,
        )

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        request = self._with_logprobs(request)
        response = handler(request)
        if _needs_no_gate(response):
            return response
        call = _AgentCall(request, handler, is_async=False, first=response)
        with _routing(call), blocking_calls():
            verdict = run_sync(lambda: self.router.aroute(_query(request)))
        return _result(call, verdict, response)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        request = self._with_logprobs(request)
        response = await handler(request)
        if _needs_no_gate(response):
            return response
        call = _AgentCall(request, handler, is_async=True, first=response)
        with _routing(call):
            verdict = await self.router.aroute(_query(request))
        return _result(call, verdict, response)

    def _with_logprobs(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        if not self.logprobs.needs.logprobs:
            return request
        settings = self.logprobs.settings(request.model, request.model_settings)
        return request.override(model_settings=settings)


@contextlib.contextmanager
def _routing(call: _AgentCall) -> Iterator[None]:
    """Around one route of an agent call (either driver): the route's models see `call`, and
    a LangGraph control-flow exception met on a fallback call reaches the agent as it is."""
    token = _CURRENT.set(call)
    try:
        yield
    except RouteError as exc:
        cause = exc.__cause__
        if cause is not None and is_control_flow(cause):  # met on a fallback call
            raise cause from None
        raise
    finally:
        _CURRENT.reset(token)


def _answer(response: ModelResponse[Any]) -> AIMessage | None:
    """The response's last AI message."""
    for message in reversed(response.result):
        if isinstance(message, AIMessage):
            return message
    return None


def _needs_no_gate(response: ModelResponse[Any] | AIMessage) -> bool:
    """Tool calls (and responses without an AI message) go back to the agent unscored."""
    message = response if isinstance(response, AIMessage) else _answer(response)
    return message is None or bool(message.tool_calls)


def _query(request: ModelRequest[Any]) -> Query:
    question = last_human_text(request.messages)
    if question is None:
        texts = [str(m.text).strip() for m in request.messages if str(m.text).strip()]
        question = texts[-1] if texts else "(the agent's turn)"
    return Query(question)


def _result(
    call: _AgentCall, verdict: Verdict, first: ModelResponse[Any] | AIMessage
) -> ModelResponse[Any]:
    if call.passed is not None:
        return call.passed
    summary = verdict_summary(verdict)
    if verdict.status == "answered":
        chosen = call.answers.get(verdict.model or "")
        if chosen is None:
            chosen = first if isinstance(first, ModelResponse) else ModelResponse(result=[first])
        return _annotated(chosen, summary)
    message = AIMessage(content=verdict.message or "", response_metadata={"demur": summary})
    return ModelResponse(result=[message])


def _annotated(response: ModelResponse[Any], summary: dict[str, Any]) -> ModelResponse[Any]:
    result: list[BaseMessage] = []
    marked = False
    for message in reversed(response.result):
        if not marked and isinstance(message, AIMessage):
            metadata = {**message.response_metadata, "demur": summary}
            message = message.model_copy(update={"response_metadata": metadata})
            marked = True
        result.append(message)
    result.reverse()
    return ModelResponse(result=result, structured_response=response.structured_response)


__all__ = ["DemurMiddleware"]

"""A LangChain Runnable that gates a model: only an answer the policy accepts comes out.

    from demur.integrations.langchain import gate

    gated = gate(ChatOpenAI(model="gpt-4o-mini", logprobs=True),
                 fallback=ChatOpenAI(model="gpt-4o", logprobs=True),
                 estimators=[MeanTokenLogprob()], threshold=0.6)
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | gated | StrOutputParser()
    chain.invoke({"question": "Who wrote Emma?"})

`gate(model, fallback=..., estimators=..., policy=...)` builds a Router over the model (and the
escalation target) and wraps it in a `DemurRunnable`; `DemurRunnable(router)` wraps a Router
you built yourself. Models may be LangChain chat models, other runnables that answer messages
with text, or demur models (`LlamaCppModel`, ...).

Input and output (the input forms are described in `demur.integrations.langchain.messages`):

- a `str`, or a dict with `question` (or `input`) and optional `context`, gives a `str`;
- messages or a prompt value (`prompt | gated`) give an `AIMessage`, as a chat model would,
  with the verdict in brief in `response_metadata["demur"]` (status, action, confidence,
  model, message, ticket_id, trace_id, steps).

The output is the accepted answer; when the route abstains, the abstention message; when a
person will answer (`AskHuman`), the pending message. To tell these apart, pass
`with_verdict=True`: the output becomes `{"output": <str or AIMessage>, "verdict": Verdict}`.
Every call also dispatches its Verdict as the custom event `demur_verdict`, which callback
handlers (`on_custom_event`) and `astream_events` (an `on_custom_event` event) receive.

Streaming buffers, then releases: `stream`, `astream` and streamed chains wait for the
verdict and then yield the released output as one chunk (an `AIMessageChunk` for messages).
Nothing of an answer the policy has not accepted reaches a stream: the models demur calls run
without the streaming handlers of `astream_events` and `astream_log`, so their tokens are not
streamed either, and those event streams show the gate's own run and its `demur_verdict`.
Other callback handlers (tracers, loggers) see every model call demur makes, nested under the
gate's run. Time to the first chunk is the time to the verdict.

Calls: `invoke`, `ainvoke`, `batch` (the inputs run concurrently, as in `abatch`), `abatch`,
`stream`, `astream`, and their chain forms. Synchronous calls use the models' sync API on
worker threads, asynchronous calls their async API (see `chat_model`). On every path demur's
spans nest under the caller's active OpenTelemetry span.

Errors: bad input raises `InvalidQueryError`; a model that returns no text raises
`OutputNotTextError` (a configuration mistake that would repeat on every call). Model failures
(timeouts, provider errors) are recorded on the verdict's steps and the policy moves on, as in
any route; a model that hangs is cut off at its `timeout_s`, and the route at its deadline.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    BaseCallbackManager,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config, var_child_runnable_config

from demur.errors import ConfigError
from demur.integrations.langchain._sync import run_sync
from demur.integrations.langchain.chat_model import (
    LangChainChatModel,
    RunnableModel,
    blocking_calls,
)
from demur.integrations.langchain.errors import OutputNotTextError
from demur.integrations.langchain.messages import MessagesPrompt, query_from_input
from demur.policies.ladder import Ladder
from demur.prompts import ChatPrompt, Prompt
from demur.protocols import Estimator, Model, Policy
from demur.router.router import Router
from demur.types import Abstain, Escalate, Verdict

VERDICT_EVENT = "demur_verdict"
"""The name of the custom event that carries each call's Verdict."""

Gateable = BaseChatModel | Runnable[Any, Any] | Model

try:  # the handlers behind astream_events / astream_log / stream_events
    from langchain_core.tracers._streaming import (
        _StreamingCallbackHandler,
        _V2StreamingCallbackHandler,
    )

    _STREAMING: tuple[type[Any], ...] = (_StreamingCallbackHandler, _V2StreamingCallbackHandler)
except ImportError:  # pragma: no cover - a langchain-core without them streams no events
    _STREAMING = ()


class DemurRunnable(Runnable[Any, Any]):
    """A Runnable that routes each input through a demur Router and returns the gated answer.

        gated = DemurRunnable(router)                    # or: gate(chat_model, ...)
        chain = prompt | gated | StrOutputParser()

    See the module docstring for inputs, outputs, streaming and errors.
    """

    def __init__(
        self, router: Router, *, with_verdict: bool = False, name: str | None = None
    ) -> None:
        if not isinstance(router, Router):
            raise ConfigError(
                f"DemurRunnable wraps a demur Router, got {type(router).__name__}; to gate a "
                "model directly use gate(model, estimators=[...])"
            )
        self.router = router
        self.with_verdict = with_verdict
        self.name = name

    def __repr__(self) -> str:
        return f"DemurRunnable({self.router!r}, with_verdict={self.with_verdict})"

    @property
    def InputType(self) -> Any:
        return Any

    @property
    def OutputType(self) -> Any:
        return Any

    # --- calls -------------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, run_type="chain")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, run_type="chain")

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any | None,
    ) -> list[Any]:
        if not inputs:
            return []
        with blocking_calls():
            return run_sync(
                lambda: self.abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
            )

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Iterator[Any]:
        """Wait for the verdict, then yield the released output as one chunk."""
        yield _chunk(self.invoke(input, config, **kwargs))

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """Wait for the verdict, then yield the released output as one chunk."""
        yield _chunk(await self.ainvoke(input, config, **kwargs))

    # --- the work ----------------------------------------------------------------------------

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        query, chat = query_from_input(input)
        token = var_child_runnable_config.set(_quiet(config, run_manager))
        try:
            with blocking_calls():
                verdict = run_sync(lambda: self.router.aroute(query))
        finally:
            var_child_runnable_config.reset(token)
        child = run_manager.get_child()
        if child.handlers:
            child.on_custom_event(VERDICT_EVENT, verdict, run_id=run_manager.run_id)
        return self._output(verdict, chat)

    async def _ainvoke(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        query, chat = query_from_input(input)
        token = var_child_runnable_config.set(_quiet(config, run_manager))
        try:
            verdict = await self.router.aroute(query)
        finally:
            var_child_runnable_config.reset(token)
        child = run_manager.get_child()
        if child.handlers:
            await child.on_custom_event(VERDICT_EVENT, verdict, run_id=run_manager.run_id)
        return self._output(verdict, chat)

    def _output(self, verdict: Verdict, chat: bool) -> Any:
        for step in verdict.steps:
            if step.error_type == OutputNotTextError.__name__:
                raise OutputNotTextError(step.error or "a model returned no text", model=step.model)
        text = verdict.text or self.router.abstain_message
        output: Any = text
        if chat:
            output = AIMessage(
                content=text,
                response_metadata={"demur": verdict_summary(verdict)},
                usage_metadata=_usage(verdict),
            )
        if self.with_verdict:
            return {"output": output, "verdict": verdict}
        return output


def gate(
    model: Gateable,
    *,
    estimators: Sequence[Estimator],
    fallback: Gateable | None = None,
    policy: Policy | None = None,
    threshold: float = 0.5,
    prompt: Prompt | None = None,
    with_verdict: bool = False,
    name: str | None = None,
    **router_options: Any,
) -> DemurRunnable:
    """Gate a chat model, runnable or demur model behind estimators and a policy.

        gated = gate(weak_llm, fallback=strong_llm, estimators=[MeanTokenLogprob()],
                     threshold=0.6)

    LangChain models are named "primary" and "fallback" in verdicts and traces (wrap them in
    `LangChainChatModel(..., name=...)` to choose); demur models keep their names. Without a
    `policy`, answers with confidence >= `threshold` are accepted; below it the route
    escalates to `fallback` when there is one, then abstains. `prompt` renders str and dict
    inputs for every model (default: each model's own; the bare question for LangChain
    models); messages always pass through as they are. Other keyword arguments go to `Router`
    (queue, budget, retry, sampling, calibrator, tracer_provider, abstain_message, ...).
    """
    models = [_as_model(model, "primary")]
    if fallback is not None:
        models.append(_as_model(fallback, "fallback"))
    if policy is None:
        rungs = [Escalate(models[1].name)] if fallback is not None else [Abstain()]
        policy = Ladder(threshold, rungs=rungs)
    if "prompts" in router_options:
        raise ConfigError("gate() sets the models' prompts itself; pass prompt=... instead")
    prompts: dict[str, Prompt] = {}
    for each in models:
        own = prompt or each.default_prompt or ChatPrompt()
        prompts[each.name] = own if isinstance(own, MessagesPrompt) else MessagesPrompt(own)
    router = Router(models, policy=policy, estimators=estimators, prompts=prompts, **router_options)
    return DemurRunnable(router, with_verdict=with_verdict, name=name)


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """The verdict in brief, JSON-ready, for `response_metadata['demur']`."""
    confidence = verdict.confidence
    return {
        "status": verdict.status,
        "action": verdict.action,
        "confidence": confidence if confidence is None or math.isfinite(confidence) else None,
        "model": verdict.model,
        "message": verdict.message,
        "ticket_id": verdict.ticket_id,
        "trace_id": verdict.trace_id,
        "steps": len(verdict.steps),
    }


def _as_model(value: Gateable, name: str) -> Model:
    if isinstance(value, BaseChatModel):
        return LangChainChatModel(value, name=name)
    if isinstance(value, Runnable):
        return RunnableModel(value, name=name)
    if isinstance(value, Model):
        return value
    raise ConfigError(
        f"gate() takes a LangChain chat model or runnable, or a demur model; "
        f"got {type(value).__name__}"
    )


def _quiet(config: RunnableConfig, run_manager: Any) -> RunnableConfig:
    """The child config for the models demur calls, without the token-streaming handlers."""
    child: BaseCallbackManager = run_manager.get_child()
    for handler in list(child.handlers):
        if _STREAMING and isinstance(handler, _STREAMING):
            child.remove_handler(handler)
    return patch_config(config, callbacks=child)


def _chunk(output: Any) -> Any:
    if isinstance(output, AIMessage) and not isinstance(output, AIMessageChunk):
        return AIMessageChunk(
            content=output.content,
            response_metadata=output.response_metadata,
            usage_metadata=output.usage_metadata,
        )
    if isinstance(output, Mapping) and isinstance(output.get("output"), AIMessage):
        return {**output, "output": _chunk(output["output"])}
    return output


def _usage(verdict: Verdict) -> UsageMetadata | None:
    if not verdict.steps:
        return None
    inputs = outputs = 0
    for step in verdict.steps:
        if step.candidate is not None:
            inputs += step.candidate.usage.input_tokens
            outputs += step.candidate.usage.output_tokens
    if not inputs and not outputs:
        return None
    return UsageMetadata(input_tokens=inputs, output_tokens=outputs, total_tokens=inputs + outputs)


__all__ = ["VERDICT_EVENT", "DemurRunnable", "Gateable", "gate", "verdict_summary"]

"""LangChain chat models and runnables as demur models.

    weak = LangChainChatModel(ChatOpenAI(model="gpt-4o-mini"), name="weak")
    router = Router([weak, strong], estimators=[MeanTokenLogprob()], policy=...)

`LangChainChatModel` wraps any `BaseChatModel`. Requests become LangChain messages (a
completion prompt becomes one human message), and the chat model's own settings apply: demur
sends the prompt's stop sequences, if any (the gate's default prompt has none), and adds a
call argument only where its request needs one, and only to chat models that declare the
setting as a field (ChatOpenAI does; others would reject or ignore it):

- `temperature`: for samples (temperature > 0); answers are drawn at the model's own setting,
  so configure it with `temperature=0` for greedy answers;
- `max_tokens` (or the model's name for it: `max_completion_tokens`, `max_output_tokens`,
  `num_predict`): when a request asks for another length than the adapter's `max_tokens`
  (an estimator's short question), or always when `max_tokens` is given;
- `seed` when the request has one, and `n` for several samples in one call;
- `logprobs=True, top_logprobs=k` (OpenAI's names) when estimators need logprobs: with
  `logprobs="auto"` only to models with a `logprobs` field, with True to any, with False never.

Logprobs are read from `response_metadata['logprobs']` (OpenAI's shape, a bare list of its
entries, or the legacy completions shape) whether asked for or not. A model that gives none
yields `Completion.tokens = None`: logprob estimators then report `unavailable`, and the
policy treats the answer as unscored (it escalates, asks a person, or abstains); a
`LogprobsUnavailableWarning` says so once per model, with the fix. Samples (`n` > 1) use the
model's own `n` where it has one, and concurrent repeated calls (seeds offset) otherwise.

`RunnableModel` wraps any other runnable (a chain ending in a chat model, a bound model): it
receives the messages and must return a `str` or a message with text; its settings are its
own, so samples are repeated calls at its own temperature.

Calls run in the LangChain run of the caller: the config (callbacks, tags, metadata) of the
surrounding runnable is picked up from the context, so a callback handler on a gated chain
sees every model call demur makes. Synchronous gates (`invoke`, `batch`, `stream`, a sync
agent) call the sync API on a worker thread, so a sync application keeps using the provider's
sync client (an async client is bound to the event loop that opened it) and demur's timeouts
still cut a call off; asynchronous gates await the async API. Provider exceptions map onto
demur's error tree (see `demur.integrations.langchain.errors`); the router retries the
transient ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import Runnable, ensure_config

from demur.bases import ModelBase
from demur.errors import ConfigError, PermanentModelError
from demur.integrations.langchain.errors import (
    as_model_error,
    is_control_flow,
    passed_through,
)
from demur.integrations.langchain.messages import (
    GATE_PROMPT,
    MessagesPrompt,
    finish_reason,
    message_logprobs,
    message_usage,
    output_text,
    parse_logprobs,
    to_langchain_messages,
)
from demur.prompts import Prompt
from demur.protocols import FREE, Price
from demur.types import Completion, Generation, GenerationRequest, Usage

# The names chat models give their answer-length setting, in order of preference.
_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


_BLOCKING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "demur_langchain_blocking", default=False
)


@contextlib.contextmanager
def blocking_calls() -> Iterator[None]:
    """Within: the models use LangChain's sync API, each call on a worker thread."""
    token = _BLOCKING.set(True)
    try:
        yield
    finally:
        _BLOCKING.reset(token)


class LogprobsUnavailableWarning(UserWarning):
    """A model was asked for logprobs and returned none; logprob estimators cannot score it."""


class RunnableModel(ModelBase):
    """Any LangChain runnable that answers chat messages with text, as a demur model.

        model = RunnableModel(llm.bind(stop=["\\n"]) | StrOutputParser(), name="weak")

    The runnable receives a list of messages and must return a `str` or a message with text
    (`OutputNotTextError` otherwise). Generation settings are the runnable's own.
    """

    provider = "langchain"

    def __init__(
        self,
        runnable: Runnable[Any, Any],
        *,
        name: str = "primary",
        timeout_s: float = 60.0,
        max_tokens: int = 256,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
    ) -> None:
        if not isinstance(runnable, Runnable):
            raise ConfigError(
                f"RunnableModel wraps a LangChain Runnable, got {type(runnable).__name__}"
            )
        if not name:
            raise ConfigError(f"{type(self).__name__} needs a non-empty name")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        self.runnable = runnable
        self.name = name
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.price = price
        self.default_prompt: Prompt = default_prompt or MessagesPrompt(GATE_PROMPT)
        self.supports_logprobs = False
        self._source = _describe(runnable)
        self._warned = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source}, name={self.name!r})"

    async def agenerate(self, request: GenerationRequest) -> Generation:
        messages = to_langchain_messages(request)
        if request.n == 1:
            outputs = [await self._call(messages)]
        else:
            outputs = await _gather([self._call(messages) for _ in range(request.n)])
        completions, usage = [], Usage()
        for output in outputs:
            text = output_text(output, f"{self.name} ({self._source})")
            tokens = None
            reason = None
            if isinstance(output, BaseMessage):
                if request.logprobs:
                    tokens = message_logprobs(output, request.top_logprobs)
                usage = usage + message_usage(output)
                reason = finish_reason(output)
            completions.append(Completion(text=text, tokens=tokens, finish_reason=reason))
        if request.logprobs and completions[0].tokens is None:
            self._warn_no_logprobs()
        return Generation(model=self.name, completions=tuple(completions), usage=usage)

    async def _call(self, messages: list[BaseMessage]) -> Any:
        try:
            if _BLOCKING.get():
                return await asyncio.to_thread(self.runnable.invoke, messages)
            return await self.runnable.ainvoke(messages)
        except Exception as exc:
            if is_control_flow(exc):
                raise passed_through(exc) from exc
            raise as_model_error(exc, self.name, self._source) from exc

    def _warn_no_logprobs(self) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"{self.name} ({self._source}) returned no token logprobs, so logprob estimators "
            "report 'unavailable' and the policy treats its answers as unscored (it escalates, "
            "asks a person, or abstains). Use a chat model that returns logprobs (e.g. "
            "ChatOpenAI(logprobs=True)) or estimators that need none (e.g. SampleAgreement).",
            LogprobsUnavailableWarning,
            stacklevel=2,
        )


class LangChainChatModel(RunnableModel):
    """A LangChain chat model as a demur model.

        weak = LangChainChatModel(ChatOpenAI(model="gpt-4o-mini"), name="weak")

    `logprobs`: "auto" asks for them (OpenAI-style call arguments) when the model has a
    `logprobs` field; True always asks; False never asks. Logprobs a response carries are
    read either way. See the module docstring for how settings and samples are passed.
    """

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        name: str | None = None,
        logprobs: bool | Literal["auto"] = "auto",
        timeout_s: float = 60.0,
        max_tokens: int | None = None,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
    ) -> None:
        if not isinstance(chat_model, BaseChatModel):
            raise ConfigError(
                f"LangChainChatModel wraps a LangChain BaseChatModel, got "
                f"{type(chat_model).__name__}; wrap other runnables with RunnableModel"
            )
        fields = set(type(chat_model).model_fields)
        self._max_tokens_field = next((f for f in _MAX_TOKENS_FIELDS if f in fields), None)
        own = getattr(chat_model, self._max_tokens_field or "", None)
        super().__init__(
            chat_model,
            name=name or _model_label(chat_model),
            timeout_s=timeout_s,
            max_tokens=max_tokens or (own if isinstance(own, int) and own > 0 else 256),
            price=price,
            default_prompt=default_prompt,
        )
        self.chat_model = chat_model
        self._send_max_tokens = max_tokens is not None
        self._temperature = "temperature" in fields
        self._seed = "seed" in fields
        self._native_n = "n" in fields
        self.supports_logprobs = "logprobs" in fields if logprobs == "auto" else bool(logprobs)
        self._top_logprobs = "top_logprobs" in fields or logprobs is True

    def _kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._max_tokens_field is not None and (
            self._send_max_tokens or request.max_tokens != self.max_tokens
        ):
            kwargs[self._max_tokens_field] = request.max_tokens
        if self._temperature and request.temperature > 0.0:
            kwargs["temperature"] = request.temperature
        if self._seed and request.seed is not None:
            kwargs["seed"] = request.seed
        if request.logprobs and self.supports_logprobs:
            kwargs["logprobs"] = True
            if request.top_logprobs and self._top_logprobs:
                kwargs["top_logprobs"] = request.top_logprobs
        return kwargs

    async def agenerate(self, request: GenerationRequest) -> Generation:
        prompt = ChatPromptValue(messages=to_langchain_messages(request))
        stop = list(request.stop) or None
        kwargs = self._kwargs(request)
        if request.n == 1 or self._native_n:
            if request.n > 1:
                kwargs["n"] = request.n
            result = await self._generate(prompt, stop, kwargs)
            generations = result.generations[0]
            # With a native `n`, providers attach the call's usage to each choice.
            usage = message_usage(_message(generations[0]))
        else:
            seed = kwargs.get("seed")
            results = await _gather(
                [
                    self._generate(
                        prompt, stop, kwargs if seed is None else {**kwargs, "seed": seed + i}
                    )
                    for i in range(request.n)
                ]
            )
            generations = [r.generations[0][0] for r in results]
            usage = Usage()
            for generation in generations:
                usage = usage + message_usage(_message(generation))
        completions = []
        for generation in generations[: request.n]:
            message = _message(generation)
            tokens = None
            if request.logprobs:
                tokens = message_logprobs(message, request.top_logprobs)
                if tokens is None and generation.generation_info:
                    tokens = parse_logprobs(
                        generation.generation_info.get("logprobs"), request.top_logprobs
                    )
            completions.append(
                Completion(
                    text=output_text(message, f"{self.name} ({self._source})"),
                    tokens=tokens,
                    finish_reason=finish_reason(message),
                )
            )
        if request.logprobs and completions[0].tokens is None:
            self._warn_no_logprobs()
        first = _message(generations[0])
        response_id = first.response_metadata.get("id") or first.id
        return Generation(
            model=self.name,
            completions=tuple(completions),
            usage=usage,
            response_id=str(response_id) if response_id else None,
        )

    async def _generate(
        self, prompt: ChatPromptValue, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> LLMResult:
        # What BaseChatModel.(a)invoke does, keeping every choice rather than the first.
        config = ensure_config()
        options: dict[str, Any] = {
            "stop": stop,
            "callbacks": config.get("callbacks"),
            "tags": config.get("tags"),
            "metadata": config.get("metadata"),
            "run_name": config.get("run_name"),
            **kwargs,
        }
        try:
            if _BLOCKING.get():
                generate = self.chat_model.generate_prompt
                return await asyncio.to_thread(generate, [prompt], **options)
            return await self.chat_model.agenerate_prompt([prompt], **options)
        except Exception as exc:
            if is_control_flow(exc):
                raise passed_through(exc) from exc
            raise as_model_error(exc, self.name, self._source) from exc


def _message(generation: Any) -> BaseMessage:
    if isinstance(generation, ChatGeneration):
        return generation.message
    raise PermanentModelError(f"expected a chat generation, got {type(generation).__name__}")


async def _gather(calls: Sequence[Any]) -> list[Any]:
    """Run calls concurrently; the first failure cancels the rest."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _model_label(chat_model: BaseChatModel) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(chat_model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


def _describe(runnable: Runnable[Any, Any]) -> str:
    try:
        return runnable.get_name()
    except Exception:  # a runnable's name is only for messages
        return type(runnable).__name__


__all__ = ["LangChainChatModel", "LogprobsUnavailableWarning", "RunnableModel"]

"""A LlamaIndex LLM as a demur model.

    from llama_index.llms.openai import OpenAI
    strong = LlamaIndexLLM(OpenAI(model="gpt-4o-mini"), name="strong", request_kwargs=openai_kwargs)
    router = Router([weak, strong], estimators=[MeanTokenLogprob()], policy=Ladder(0.6, ...))

How a GenerationRequest maps onto the LLM:

- `messages` go to `achat`, `prompt` to `acomplete`. A CustomLLM that keeps LlamaIndex's
  default chat (render the messages with `messages_to_prompt`, then `complete`) is called
  through `complete` directly, as that default chat would, because the default drops the
  completion's logprobs on the way.
- CustomLLM's default async methods run the sync ones on the event loop. The adapter calls
  the sync methods in a worker thread instead, one call at a time per adapter (a local model is
  rarely safe to call concurrently), so the router's timeout can stop the wait; the call
  itself runs on to its end in the background.
- The generic LLM interface takes no sampling settings. `request_kwargs(request)` returns the
  keyword arguments each call passes (`openai_kwargs` suits OpenAI-style chat LLMs); without
  it the LLM's own settings apply. Stop sequences are also applied to the returned text, after
  its leading whitespace, for LLMs that ignore them.
- `n` completions are `n` calls, one after another (a seed, when set, is offset per call).
- Logprobs come from `ChatResponse.logprobs` / `CompletionResponse.logprobs`. LlamaIndex gives
  each position a list of top alternatives rather than the token chosen: the adapter takes the
  alternative that continues the text (else the first) as the token, and the list as its
  top-k. An LLM that gives none yields `Completion.tokens = None`, and logprob estimators
  report "unavailable".
- Errors become demur's, so the router retries what may pass: timeouts raise
  ModelTimeoutError; HTTP 429 and rate-limit errors RateLimitError; 5xx and lost connections
  ServerError; a prompt longer than the context ContextOverflowError; 404 ModelNotFoundError;
  a reply without text (a tool call), and anything else, PermanentModelError.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LogProb,
    MessageRole,
)
from llama_index.core.llms import CustomLLM

from demur.bases import ModelBase
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    RateLimitError,
    ServerError,
)
from demur.prompts import ChatPrompt, CompletionPrompt, Prompt
from demur.protocols import FREE, Price
from demur.types import (
    Completion,
    Generation,
    GenerationRequest,
    Message,
    TokenAlternative,
    TokenLogprob,
    Usage,
)

RequestKwargs = Callable[[GenerationRequest], Mapping[str, Any]]
LLMResponse = ChatResponse | CompletionResponse

_T = TypeVar("_T")
_ROLES = {
    "system": MessageRole.SYSTEM,
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
}
_OVERFLOW = re.compile(
    r"context (?:length|window)|maximum context|too many tokens|prompt is too long"
    r"|exceeds? (?:the )?(?:context|max)",
    re.IGNORECASE,
)


# --- responses ---------------------------------------------------------------------------------


def tokens_from_logprobs(
    text: str, logprobs: Sequence[Sequence[LogProb]] | None
) -> tuple[TokenLogprob, ...] | None:
    """demur tokens from LlamaIndex logprobs (one list of alternatives per position), or None.

    At each position the alternative that continues `text` is taken for the token, else the
    first (the most likely, which greedy decoding picks). Empty positions are skipped.
    """
    if not logprobs:
        return None
    tokens: list[TokenLogprob] = []
    cursor = 0
    for position in logprobs:
        if not position:
            continue
        chosen = next(
            (lp for lp in position if lp.token and text.startswith(lp.token, cursor)), position[0]
        )
        cursor += len(chosen.token)
        top = (
            tuple(TokenAlternative(token=lp.token, logprob=float(lp.logprob)) for lp in position)
            if len(position) > 1
            else ()
        )
        tokens.append(TokenLogprob(token=chosen.token, logprob=float(chosen.logprob), top=top))
    return tuple(tokens) or None


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop sequence after any leading whitespace; True when cut."""
    start = len(text) - len(text.lstrip())
    cuts = [i for s in stop if s and (i := text.find(s, start)) != -1]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def _trim(tokens: tuple[TokenLogprob, ...], length: int) -> tuple[TokenLogprob, ...] | None:
    """The tokens that spell the first `length` characters."""
    kept: list[TokenLogprob] = []
    seen = 0
    for token in tokens:
        if seen >= length:
            break
        kept.append(token)
        seen += len(token.token)
    return tuple(kept) or None


def response_text(response: object) -> str:
    """The text of a ChatResponse or CompletionResponse; TypeError for anything else."""
    if isinstance(response, ChatResponse):
        text = response.message.content
        if text is None:
            raise TypeError(
                "the reply has no text (a tool call, or only images or audio); demur scores "
                "text answers"
            )
        return text
    if isinstance(response, CompletionResponse):
        if not isinstance(response.text, str):
            raise TypeError(f"the completion's text is {type(response.text).__name__}, not str")
        return response.text
    raise TypeError(
        f"got {type(response).__name__}, not a LlamaIndex ChatResponse or CompletionResponse"
    )


def to_completion(response: object, stop: Sequence[str] = ()) -> Completion:
    """A demur Completion from a LlamaIndex response: text, token logprobs, finish reason."""
    full = response_text(response)
    logprobs = getattr(response, "logprobs", None)
    tokens = tokens_from_logprobs(full, logprobs)
    text, cut = apply_stop(full, stop)
    if cut and tokens is not None:
        tokens = _trim(tokens, len(text))
    finish = "stop" if cut else _finish_reason(getattr(response, "raw", None))
    return Completion(text=text, tokens=tokens, finish_reason=finish)


def _field(value: object, key: str) -> object:
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


def _finish_reason(raw: object) -> str | None:
    """The finish reason of an OpenAI-shaped raw response, when there is one."""
    choices = _field(raw, "choices") if raw is not None else None
    if isinstance(choices, Sequence) and choices and not isinstance(choices, str):
        reason = _field(choices[0], "finish_reason")
        if isinstance(reason, str):
            return reason
    return None


def _count(source: object, *keys: str) -> int:
    for key in keys:
        value = _field(source, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def usage_of(response: object) -> Usage:
    """Token counts from a response's additional_kwargs or its raw `usage`, where given."""
    extra = getattr(response, "additional_kwargs", None) or {}
    raw_usage = _field(getattr(response, "raw", None), "usage")
    for source in (extra, raw_usage):
        if source is None:
            continue
        used = Usage(
            input_tokens=_count(source, "prompt_tokens", "input_tokens"),
            output_tokens=_count(source, "completion_tokens", "output_tokens"),
        )
        if used.input_tokens or used.output_tokens:
            return used
    return Usage()


def _response_id(response: object) -> str | None:
    raw = getattr(response, "raw", None)
    value = _field(raw, "id") if raw is not None else None
    return value if isinstance(value, str) else None


# --- errors ------------------------------------------------------------------------------------


def _status_code(exc: BaseException) -> int | None:
    for candidate in (exc, getattr(exc, "response", None)):
        for key in ("status_code", "status"):
            value = getattr(candidate, key, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def model_error(name: str, exc: BaseException) -> ModelError:
    """demur's error for what a LlamaIndex LLM raised, transient or permanent."""
    if isinstance(exc, ModelError):
        return exc
    kind = type(exc).__name__
    where = f"{name}: the LlamaIndex LLM raised {kind}" + (f": {exc}" if str(exc) else "")
    status = _status_code(exc)
    if isinstance(exc, TimeoutError) or "Timeout" in kind or status == 408:
        return ModelTimeoutError(
            f"{where}. Raise the LLM's timeout, or check that the provider is not overloaded.",
            model=name,
        )
    if status == 429 or "RateLimit" in kind:
        return RateLimitError(
            f"{where}. Lower the request rate or raise the account's limit.", model=name
        )
    if _OVERFLOW.search(str(exc)) and (status is None or 400 <= status < 500):
        return ContextOverflowError(
            f"{where}. Shorten the question or its passages, or use a model with a longer context.",
            model=name,
        )
    if status == 404 or "NotFound" in kind:
        return ModelNotFoundError(
            f"{where}. Check the model name the LLM was built with.", model=name
        )
    if status in (401, 403) or "Authentication" in kind or "PermissionDenied" in kind:
        return PermanentModelError(
            f"{where}. Authentication failed: check the API key the LLM was built with.",
            model=name,
        )
    server_side = status is not None and status >= 500
    if server_side or isinstance(exc, ConnectionError) or "Connection" in kind:
        return ServerError(
            f"{where}. The provider failed or the connection dropped; it may pass on retry.",
            model=name,
        )
    return PermanentModelError(
        f"{where}. Retrying will not help: check the LLM's settings and the request.",
        model=name,
    )


# --- the model ---------------------------------------------------------------------------------


def _own(llm: BaseLLM, method: str) -> bool:
    """True unless `llm` inherits CustomLLM's implementation of `method`.

    LlamaIndex re-wraps inherited methods in every subclass, so identity is checked on the
    unwrapped functions.
    """
    if not isinstance(llm, CustomLLM):
        return True
    mine = inspect.unwrap(getattr(type(llm), method))
    return mine is not inspect.unwrap(getattr(CustomLLM, method))


def openai_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments for LlamaIndex's OpenAI-style chat LLMs: the request's settings.

    LlamaIndex builds its logprobs from the top alternatives only, so `top_logprobs` is at
    least 1 whenever logprobs are asked for.
    """
    kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if request.logprobs:
        kwargs["logprobs"] = True
        kwargs["top_logprobs"] = max(1, request.top_logprobs)
    return kwargs


class LlamaIndexLLM(ModelBase):
    """A LlamaIndex LLM (`llama_index.core.llms.LLM`) that serves as a demur model.

        model = LlamaIndexLLM(llm, name="strong")
        router = Router([weak, model], policy=Ladder(0.6, rungs=[Escalate("strong")]))

    `name` defaults to the LLM's `metadata.model_name`. `request_kwargs(request)` gives the
    keyword arguments of each call (e.g. `openai_kwargs`). Chat LLMs (`metadata.is_chat_model`)
    get a ChatPrompt by default, the others a few-shot CompletionPrompt. See the module
    docstring for how requests, logprobs and errors map.
    """

    def __init__(
        self,
        llm: BaseLLM,
        name: str | None = None,
        *,
        request_kwargs: RequestKwargs | None = None,
        max_tokens: int = 64,
        timeout_s: float = 60.0,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
        supports_logprobs: bool = True,
        provider: str = "llama_index",
    ) -> None:
        if not isinstance(llm, BaseLLM):
            raise ConfigError(
                "LlamaIndexLLM wraps a LlamaIndex LLM (an instance of "
                f"llama_index.core.llms.LLM), got {type(llm).__name__}"
            )
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        metadata = llm.metadata
        if name is None:
            model_name = metadata.model_name
            name = model_name if model_name and model_name != "unknown" else type(llm).__name__
        if not name:
            raise ConfigError("LlamaIndexLLM needs a non-empty name")
        self.llm = llm
        self.name = name
        self.request_kwargs = request_kwargs
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.price = price
        self.supports_logprobs = supports_logprobs
        self.provider = provider
        self.default_prompt: Prompt = default_prompt or (
            ChatPrompt() if metadata.is_chat_model else CompletionPrompt()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LlamaIndexLLM({type(self.llm).__name__}, name={self.name!r})"

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions, one call each."""
        if not self.supports_logprobs:
            request = request.model_copy(update={"logprobs": False, "top_logprobs": 0})
        completions: list[Completion] = []
        usage = Usage()
        response_id: str | None = None
        for i in range(request.n):
            single = request
            if request.n != 1:
                seed = None if request.seed is None else request.seed + i
                single = request.model_copy(update={"n": 1, "seed": seed})
            response = await self._call(single)
            try:
                completion = to_completion(response, request.stop)
            except TypeError as exc:
                raise PermanentModelError(
                    f"{self.name}: {type(self.llm).__name__} {exc}", model=self.name
                ) from None
            if not request.logprobs:
                completion = completion.model_copy(update={"tokens": None})
            completions.append(completion)
            usage = usage + usage_of(response)
            response_id = response_id or _response_id(response)
        return Generation(
            model=self.name, completions=tuple(completions), usage=usage, response_id=response_id
        )

    async def _call(self, request: GenerationRequest) -> object:
        kwargs = dict(self.request_kwargs(request)) if self.request_kwargs is not None else {}
        llm = self.llm
        try:
            if request.messages is not None:
                messages = [_chat_message(m) for m in request.messages]
                if not _own(llm, "chat"):
                    # LlamaIndex's default chat for a CustomLLM, minus the loss of logprobs.
                    assert isinstance(llm, CustomLLM) and llm.messages_to_prompt is not None
                    prompt = llm.messages_to_prompt(messages)
                    return await self._complete(prompt, kwargs, formatted=True)
                if _own(llm, "achat"):
                    return await llm.achat(messages, **kwargs)
                return await self._in_thread(lambda: llm.chat(messages, **kwargs))
            return await self._complete(request.prompt or "", kwargs, formatted=False)
        except Exception as exc:
            raise model_error(self.name, exc) from exc

    async def _complete(self, prompt: str, kwargs: dict[str, Any], *, formatted: bool) -> object:
        llm = self.llm
        if _own(llm, "acomplete"):
            return await llm.acomplete(prompt, formatted=formatted, **kwargs)
        return await self._in_thread(lambda: llm.complete(prompt, formatted=formatted, **kwargs))

    async def _in_thread(self, call: Callable[[], _T]) -> _T:
        def locked() -> _T:
            with self._lock:
                return call()

        return await asyncio.to_thread(locked)


def _chat_message(message: Message) -> ChatMessage:
    return ChatMessage(role=_ROLES[message.role], content=message.content)


__all__ = [
    "LlamaIndexLLM",
    "RequestKwargs",
    "apply_stop",
    "model_error",
    "openai_kwargs",
    "to_completion",
    "tokens_from_logprobs",
    "usage_of",
]

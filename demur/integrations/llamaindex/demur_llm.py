"""A demur model as a LlamaIndex LLM, so a query engine can answer offline on a local model.

    llm = DemurLLM("smollm2-135m")                  # a built-in llama.cpp model, by name
    llm = DemurLLM(LlamaCppModel("weak", builtin="qwen2.5-0.5b"), max_tokens=48)
    engine = index.as_query_engine(llm=llm)

The reverse of `LlamaIndexLLM`. Each call is one `GenerationRequest` (greedy by default) that
asks for token logprobs; they come back as LlamaIndex `LogProb`s, one position per token, the
chosen token first and its top alternatives after it, so `DemurQueryEngine`, `instrument()`
and `LlamaIndexLLM` read them back.

- Chat models (`metadata.is_chat_model`) take `chat` messages as they are and `complete`
  prompts as one user message; completion models take `complete` prompts as they are and
  `chat` messages rendered by `messages_to_prompt`.
- The async methods await the model's `agenerate` on the caller's loop. The sync ones run it on
  this thread's long-lived demur loop or, when called inside a running event loop (a notebook,
  an async framework calling sync code), on a worker thread, in a copy of the caller's context
  either way. Never `asyncio.run()`, which fails inside a running loop.
- Streaming yields the whole answer as one chunk: demur generates before it answers.
- The model's errors (demur's `ModelError` tree) reach the caller unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import Field, PrivateAttr

from demur.adapters.models.catalog import BUILTIN_MODELS
from demur.errors import ConfigError, unknown_name
from demur.prompts import CompletionPrompt
from demur.protocols import Model, check_component
from demur.router.thread_loop import run_on_thread_loop
from demur.types import Generation, GenerationRequest, Message, TokenLogprob

T = TypeVar("T")
_Role = Literal["system", "user", "assistant"]

# LlamaIndex's roles onto demur's three; tool and function results have no demur equivalent.
_ROLES: dict[MessageRole, _Role] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}
# Call arguments a caller may pass to override the LLM's settings for one call.
_OVERRIDES = ("max_tokens", "temperature", "top_logprobs", "seed", "stop")


# --- requests and responses --------------------------------------------------------------------


def demur_messages(messages: Sequence[ChatMessage]) -> tuple[Message, ...]:
    """demur messages from LlamaIndex ones; ConfigError for a role or content demur cannot send."""
    turns: list[Message] = []
    for position, message in enumerate(messages):
        role = _ROLES.get(MessageRole(message.role))
        if role is None:
            raise ConfigError(
                f"DemurLLM sends system, user and assistant messages; message {position} is a "
                f"{MessageRole(message.role).value!r} message. Use an LLM with tool calling "
                "for agents that pass tool results back"
            )
        content = message.content
        if content is None and message.blocks:
            raise ConfigError(
                f"DemurLLM sends text; message {position} has no text block (only "
                f"{', '.join(type(b).__name__ for b in message.blocks)})"
            )
        turns.append(Message(role=role, content=content or ""))
    return tuple(turns)


def llamaindex_logprobs(tokens: Sequence[TokenLogprob] | None) -> list[list[LogProb]] | None:
    """LlamaIndex logprobs from demur tokens: per position, the chosen token, then the others
    of its top alternatives (`tokens_from_logprobs` reverses this)."""
    if not tokens:
        return None
    positions = []
    for token in tokens:
        chosen = LogProb(token=token.token, logprob=token.logprob)
        others = [
            LogProb(token=alt.token, logprob=alt.logprob)
            for alt in token.top
            if alt.token != token.token
        ]
        positions.append([chosen, *others])
    return positions


def _response_fields(generation: Generation) -> dict[str, Any]:
    """Text, logprobs, raw and usage of the first completion, as LlamaIndex responses hold them."""
    completion = generation.completions[0]
    return {
        "text": completion.text,
        "logprobs": llamaindex_logprobs(completion.tokens),
        "raw": {"model": generation.model, "finish_reason": completion.finish_reason},
        "additional_kwargs": {
            "prompt_tokens": generation.usage.input_tokens,
            "completion_tokens": generation.usage.output_tokens,
        },
    }


def _completion_response(generation: Generation) -> CompletionResponse:
    return CompletionResponse(**_response_fields(generation))


def _chat_response(generation: Generation) -> ChatResponse:
    fields = _response_fields(generation)
    message = ChatMessage(role=MessageRole.ASSISTANT, content=fields.pop("text"))
    return ChatResponse(message=message, **fields)


# --- running from sync code ----------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `make()` to completion from sync code, in a copy of the caller's context."""
    context = contextvars.copy_context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_on_thread_loop(make(), context)
    # This thread's loop is busy running the caller: use a worker thread's loop instead.
    return _offload().submit(context.run, lambda: run_on_thread_loop(make())).result()


def _offload() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="demur-llamaindex")
        return _pool


# --- the LLM -------------------------------------------------------------------------------------


def _resolve(model: Model | str) -> Model:
    if isinstance(model, str):
        if model not in BUILTIN_MODELS:
            raise ConfigError(
                f"DemurLLM(model=...): {unknown_name('built-in model', model, BUILTIN_MODELS)} "
                "Or pass a demur Model, such as LlamaCppModel('local', path='model.gguf')."
            )
        # Imported on use: the adapter looks for llama.cpp, which a remote model does not need.
        from demur.adapters.models.llama_cpp import LlamaCppModel

        return LlamaCppModel(model, builtin=model)
    check_component("DemurLLM's model", model, Model, "ModelBase")
    return model


def _chat_model(model: Model) -> bool:
    chat = getattr(model, "chat", None)
    if isinstance(chat, bool):
        return chat
    return not isinstance(model.default_prompt, CompletionPrompt)


def _context_window(model: Model) -> int:
    for attribute in ("context_window", "n_ctx"):
        value = getattr(model, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_CONTEXT_WINDOW


class DemurLLM(CustomLLM):
    """A LlamaIndex LLM over a demur model (a `LlamaCppModel`, any demur Model, or a built-in
    model's name), with token logprobs on every response.

    Settings default to the model's: `max_tokens` to its `max_tokens`, `context_window` to its
    `context_window` or `n_ctx`, `is_chat_model` to its `chat` flag or its default prompt's
    kind. `temperature` 0 is greedy; `top_logprobs` adds that many alternatives per token. A
    call's `max_tokens`, `temperature`, `top_logprobs`, `seed` and `stop` keyword arguments
    override the settings for that call; other call arguments are ignored.
    """

    model_name: str = Field(description="The demur model's name.")
    max_tokens: int = Field(ge=1, description="Most tokens in an answer.")
    temperature: float = Field(default=0.0, ge=0.0, description="0 decodes greedily.")
    top_logprobs: int = Field(default=0, ge=0, le=20, description="Alternatives per token.")
    seed: int | None = Field(default=None, description="Sampling seed; None: the model's.")
    context_window: int = Field(ge=16, description="Tokens the model reads and writes.")
    is_chat_model: bool = Field(description="Whether the model takes chat messages.")

    _model: Model = PrivateAttr()

    def __init__(
        self,
        model: Model | str,
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_logprobs: int = 0,
        seed: int | None = None,
        context_window: int | None = None,
        is_chat_model: bool | None = None,
        **kwargs: Any,
    ) -> None:
        resolved = _resolve(model)
        super().__init__(
            model_name=resolved.name,
            max_tokens=max_tokens if max_tokens is not None else resolved.max_tokens,
            temperature=temperature,
            top_logprobs=top_logprobs,
            seed=seed,
            context_window=context_window or _context_window(resolved),
            is_chat_model=_chat_model(resolved) if is_chat_model is None else is_chat_model,
            **kwargs,
        )
        self._model = resolved

    @classmethod
    def class_name(cls) -> str:
        return "DemurLLM"

    @property
    def model(self) -> Model:
        """The demur model that answers."""
        return self._model

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens,
            is_chat_model=self.is_chat_model,
            model_name=self.model_name,
        )

    # --- requests --------------------------------------------------------------------------

    def _request(
        self, messages: tuple[Message, ...] | None, prompt: str | None, kwargs: dict[str, Any]
    ) -> GenerationRequest:
        settings: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_logprobs": self.top_logprobs,
            "seed": self.seed,
        }
        settings.update({key: kwargs[key] for key in _OVERRIDES if key in kwargs})
        if "stop" in settings:
            settings["stop"] = tuple(settings["stop"] or ())
        return GenerationRequest(messages=messages, prompt=prompt, logprobs=True, **settings)

    def _chat_request(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> GenerationRequest:
        if self.is_chat_model:
            return self._request(demur_messages(messages), None, kwargs)
        assert self.messages_to_prompt is not None  # LLM's validator sets a default
        return self._request(None, self.messages_to_prompt(messages), kwargs)

    def _complete_request(
        self, prompt: str, formatted: bool, kwargs: dict[str, Any]
    ) -> GenerationRequest:
        if self.is_chat_model:
            return self._request((Message(role="user", content=prompt),), None, kwargs)
        if not formatted and self.completion_to_prompt is not None:
            prompt = self.completion_to_prompt(prompt)
        return self._request(None, prompt, kwargs)

    def _generate(self, request: GenerationRequest) -> Generation:
        return _run_sync(lambda: self._model.agenerate(request))

    # --- completion ------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        request = self._complete_request(prompt, formatted, kwargs)
        return _completion_response(self._generate(request))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        request = self._complete_request(prompt, formatted, kwargs)
        return _completion_response(await self._model.agenerate(request))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        request = self._complete_request(prompt, formatted, kwargs)
        response = _completion_response(self._generate(request))
        response.delta = response.text

        def one_chunk() -> Generator[CompletionResponse, None, None]:
            yield response

        return one_chunk()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        request = self._complete_request(prompt, formatted, kwargs)
        response = _completion_response(await self._model.agenerate(request))
        response.delta = response.text

        async def one_chunk() -> AsyncGenerator[CompletionResponse, None]:
            yield response

        return one_chunk()

    # --- chat ------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._chat_request(messages, kwargs)
        return _chat_response(self._generate(request))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._chat_request(messages, kwargs)
        return _chat_response(await self._model.agenerate(request))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        request = self._chat_request(messages, kwargs)
        response = _chat_response(self._generate(request))
        response.delta = response.message.content

        def one_chunk() -> Generator[ChatResponse, None, None]:
            yield response

        return one_chunk()

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        request = self._chat_request(messages, kwargs)
        response = _chat_response(await self._model.agenerate(request))
        response.delta = response.message.content

        async def one_chunk() -> AsyncGenerator[ChatResponse, None]:
            yield response

        return one_chunk()

    def __repr__(self) -> str:
        return f"DemurLLM({self._model!r}, max_tokens={self.max_tokens})"


__all__ = ["DemurLLM", "demur_messages", "llamaindex_logprobs"]

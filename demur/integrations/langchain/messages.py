"""Between LangChain and demur: inputs to queries, messages both ways, answers to text.

What a gate accepts, and what the models behind it receive:

- a `str`: the question, rendered by the model's prompt (`GATE_PROMPT` for LangChain models:
  the bare question, as `chat_model.invoke(str)` would send it);
- a dict with `question` (or `input`, or `query`) and optional `context` (a str, or a list of
  str or LangChain `Document`s): rendered by the model's prompt, passages included;
- messages (a list of messages, message-like tuples or dicts, a `PromptValue` such as a
  `ChatPromptTemplate`'s output, or a dict with `messages`): passed through as they are, by
  `MessagesPrompt` (base models, prompted few-shot, get the last human message). Only text
  turns are routed: system, human and AI messages. Tool calls, tool results and non-text
  content raise `InvalidQueryError`; gate agents with `DemurMiddleware`.

A model's answer must be text: a `str` or a message whose text is not empty, or an empty
message without tool calls. Anything else raises `OutputNotTextError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document as LangChainDocument
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue

from demur.errors import InvalidQueryError
from demur.integrations.langchain.errors import OutputNotTextError
from demur.prompts import ChatPrompt, CompletionPrompt, Prompt
from demur.types import (
    GenerationRequest,
    Message,
    Query,
    TokenAlternative,
    TokenLogprob,
    Usage,
)

MESSAGES_KEY = "langchain.messages"
"""Where a query carries the conversation it came from (`Query.metadata`)."""

GATE_PROMPT = ChatPrompt(
    system="",
    user="{question}",
    user_with_context="Answer from this context.\n\nContext:\n{context}\n\nQuestion: {question}",
    stop=(),
)
"""The default prompt of LangChain models under demur: the question as one human message."""

_QUESTION_KEYS = ("question", "input", "query")
_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
}


@dataclass(frozen=True)
class MessagesPrompt:
    """Sends a query's own conversation as it is; other queries go to `fallback`.

    Passages retrieved for the query, if any, come first as a system message. A base model,
    whose `fallback` is a `CompletionPrompt`, cannot follow a conversation: it gets the last
    human message as the question, rendered by that prompt.
    """

    fallback: Prompt = field(default=GATE_PROMPT)

    def render(self, query: Query) -> GenerationRequest:
        messages: tuple[Message, ...] | None = query.metadata.get(MESSAGES_KEY)
        if messages is None or isinstance(self.fallback, CompletionPrompt):
            return self.fallback.render(query)
        if query.context:
            passages = "\n\n".join(query.context)
            messages = (Message(role="system", content=f"Context:\n{passages}"), *messages)
        return GenerationRequest(messages=messages)


# --- inputs --------------------------------------------------------------------------------


def query_from_input(value: object) -> tuple[Query, bool]:
    """The Query for a gate's input, and whether the input was a conversation."""
    if isinstance(value, str):
        return Query.coerce(value), False
    if isinstance(value, PromptValue):
        return query_from_messages(value.to_messages()), True
    if isinstance(value, BaseMessage):
        return query_from_messages([value]), True
    if isinstance(value, Mapping):
        if "messages" in value:
            return query_from_messages(_as_messages(value["messages"])), True
        return _query_from_dict(value), False
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return query_from_messages(_as_messages(value)), True
    raise InvalidQueryError(
        f"a gate takes a str, a dict with 'question' (and optional 'context'), messages, or a "
        f"prompt value; got {type(value).__name__}"
    )


def _as_messages(value: object) -> list[BaseMessage]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise InvalidQueryError(
            f"'messages' must be a list of messages, got {type(value).__name__}"
        )
    try:
        return convert_to_messages(value)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InvalidQueryError(f"cannot read the input as chat messages: {exc}") from None


def _query_from_dict(value: Mapping[Any, Any]) -> Query:
    key = next((k for k in _QUESTION_KEYS if k in value), None)
    if key is None:
        keys = ", ".join(repr(k) for k in value) or "none"
        raise InvalidQueryError(
            f"a dict input needs a 'question' (or 'input') key, and may have 'context'; "
            f"got keys: {keys}"
        )
    question = value[key]
    if not isinstance(question, str):
        raise InvalidQueryError(f"{key!r} must be a str, got {type(question).__name__}")
    query = Query.coerce(question)
    context = _context(value.get("context"))
    return query.model_copy(update={"context": context}) if context else query


def _context(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, LangChainDocument):
        return (value.page_content,)
    if isinstance(value, Sequence):
        return tuple(text for item in value for text in _context(item))
    raise InvalidQueryError(
        f"'context' must be a str, a Document, or a list of them; got {type(value).__name__}"
    )


def query_from_messages(messages: Sequence[BaseMessage]) -> Query:
    """A Query whose question is the last human turn and which carries the whole conversation."""
    converted = to_demur_messages(messages)
    question = next((m.content for m in reversed(converted) if m.role == "user"), None)
    if question is None or not question.strip():
        raise InvalidQueryError(
            "the conversation has no human message with text to answer; end it with the "
            "question, e.g. [('system', '...'), ('human', 'Who wrote Emma?')]"
        )
    return Query(question, metadata={MESSAGES_KEY: converted})


def to_demur_messages(messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
    """Text turns as demur messages; tool turns and non-text content raise InvalidQueryError."""
    converted = []
    for i, message in enumerate(messages):
        kind = message.role if isinstance(message, ChatMessage) else message.type
        role = _ROLES.get(kind)
        if role is None:
            raise InvalidQueryError(
                f"message {i} is a {type(message).__name__} ({kind!r}); the gate routes text "
                "conversations of system, human and AI turns. Gate agents, whose turns include "
                "tools, with DemurMiddleware instead."
            )
        if isinstance(message, AIMessage) and message.tool_calls:
            raise InvalidQueryError(
                f"message {i} is an AIMessage with tool calls; the gate routes text "
                "conversations. Gate agents with DemurMiddleware instead."
            )
        text = str(message.text)
        if not text and not isinstance(message.content, str) and message.content:
            kinds = sorted({_block_type(b) for b in message.content})
            raise InvalidQueryError(
                f"message {i} has no text, only {', '.join(kinds)} content; the gate routes text"
            )
        converted.append(Message(role=role, content=text))
    return tuple(converted)


def _block_type(block: object) -> str:
    if isinstance(block, Mapping):
        return str(block.get("type", "unknown"))
    return type(block).__name__


def to_langchain_messages(request: GenerationRequest) -> list[BaseMessage]:
    """The request as LangChain messages; a completion prompt becomes one human message."""
    if request.messages is None:
        return [HumanMessage(content=request.prompt or "")]
    converted: list[BaseMessage] = []
    for message in request.messages:
        if message.role == "system":
            converted.append(SystemMessage(content=message.content))
        elif message.role == "assistant":
            converted.append(AIMessage(content=message.content))
        else:
            converted.append(HumanMessage(content=message.content))
    return converted


def last_human_text(messages: Sequence[BaseMessage]) -> str | None:
    """The text of the last human message, if any has text."""
    for message in reversed(messages):
        if message.type == "human":
            text = str(message.text).strip()
            if text:
                return text
    return None


# --- outputs -------------------------------------------------------------------------------


def output_text(value: object, where: str) -> str:
    """The text of a model's or runnable's output; OutputNotTextError when it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        text = str(value.text)
        if text:
            return text
        tool_calls = isinstance(value, AIMessage) and bool(value.tool_calls)
        if not tool_calls and (isinstance(value.content, str) or not value.content):
            return ""  # an empty answer is still an answer; estimators say what it is worth
        what = (
            "an AIMessage with tool calls and no text"
            if tool_calls
            else "a message without text ("
            + ", ".join(sorted({_block_type(b) for b in value.content}))
            + " content)"
        )
        raise OutputNotTextError(
            f"{where} returned {what}. A gated runnable must answer in text: gate the chat "
            "model without tools, or gate agents with DemurMiddleware."
        )
    raise OutputNotTextError(
        f"{where} returned {type(value).__name__}, not text. A gated runnable must return a str "
        "or an AIMessage: end the chain with the chat model or with StrOutputParser()."
    )


def message_logprobs(message: BaseMessage, top_k: int) -> tuple[TokenLogprob, ...] | None:
    """Token logprobs from `response_metadata['logprobs']`, in any of the common shapes.

    OpenAI chat (`{'content': [{'token', 'logprob', 'top_logprobs'}]}`), a bare list of such
    entries, or the legacy completions shape (`{'tokens', 'token_logprobs', 'top_logprobs'}`).
    None when the provider gave none or in a shape we do not know: never made-up values.
    """
    raw = message.response_metadata.get("logprobs")
    return parse_logprobs(raw, top_k)


def parse_logprobs(raw: object, top_k: int) -> tuple[TokenLogprob, ...] | None:
    """See `message_logprobs`."""
    try:
        if isinstance(raw, Mapping):
            if isinstance(raw.get("content"), list):
                return _entries(raw["content"], top_k)
            if isinstance(raw.get("tokens"), list) and isinstance(raw.get("token_logprobs"), list):
                return _legacy(raw, top_k)
            return None
        if isinstance(raw, list):
            return _entries(raw, top_k)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _entries(entries: list[Any], top_k: int) -> tuple[TokenLogprob, ...]:
    tokens = []
    for entry in entries:
        logprob = float(entry["logprob"])
        if math.isnan(logprob):
            raise ValueError("logprob is not a number")
        top = tuple(
            TokenAlternative(token=str(alt["token"]), logprob=float(alt["logprob"]))
            for alt in (entry.get("top_logprobs") or ())[:top_k]
        )
        tokens.append(TokenLogprob(token=str(entry["token"]), logprob=logprob, top=top))
    return tuple(tokens)


def _legacy(raw: Mapping[str, Any], top_k: int) -> tuple[TokenLogprob, ...]:
    tops = raw.get("top_logprobs") or [None] * len(raw["tokens"])
    tokens = []
    for token, logprob, top in zip(raw["tokens"], raw["token_logprobs"], tops, strict=True):
        ranked = sorted((top or {}).items(), key=lambda item: item[1], reverse=True)[:top_k]
        tokens.append(
            TokenLogprob(
                token=str(token),
                logprob=float(logprob),
                top=tuple(TokenAlternative(token=t, logprob=float(lp)) for t, lp in ranked),
            )
        )
    return tuple(tokens)


def message_usage(message: BaseMessage) -> Usage:
    """Token counts from `usage_metadata`, zero when the provider reports none."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return Usage()
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
    )


def finish_reason(message: BaseMessage) -> str | None:
    metadata = message.response_metadata
    reason = metadata.get("finish_reason") or metadata.get("stop_reason")
    return str(reason) if reason is not None else None


__all__ = [
    "GATE_PROMPT",
    "MESSAGES_KEY",
    "MessagesPrompt",
    "finish_reason",
    "last_human_text",
    "message_logprobs",
    "message_usage",
    "output_text",
    "parse_logprobs",
    "query_from_input",
    "query_from_messages",
    "to_demur_messages",
    "to_langchain_messages",
]

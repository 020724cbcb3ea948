"""LangChain failures as demur errors, so the router can retry, record, or report them.

A provider's exception becomes a `TransientModelError` (timeouts, rate limits, 5xx, dropped
connections: retried) or a `PermanentModelError` (the rest). Providers differ, so the mapping
reads what most of them expose: an HTTP status (`status_code`, or `response.status_code`) and
the exception's class names (`APITimeoutError`, `RateLimitError`, `APIConnectionError`, ...).
"""

from __future__ import annotations

import re

from demur.errors import (
    ContextOverflowError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    OutputNotTextError,
    PermanentModelError,
    RateLimitError,
    RouteError,
    ServerError,
)

_SNIPPET = 300
# How providers word "the prompt does not fit": OpenAI, Anthropic, vLLM, llama.cpp, Ollama.
_OVERFLOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|(prompt|input) is too long|"
    r"exceeds? the (model'?s? )?(maximum|max|context)|reduce the length",
    re.IGNORECASE,
)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _status(exc: BaseException) -> int | None:
    """The HTTP status a provider's exception carries, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for attribute in ("status_code", "status", "http_status"):
            value = getattr(holder, attribute, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def _names(exc: BaseException) -> str:
    """The lower-cased class names of the exception and its bases, joined."""
    return " ".join(cls.__name__.lower() for cls in type(exc).__mro__)


def is_control_flow(exc: BaseException | None) -> bool:
    """LangGraph's interrupts and commands travel as exceptions; demur lets them through."""
    return exc is not None and any(cls.__name__ == "GraphBubbleUp" for cls in type(exc).__mro__)


def passed_through(exc: BaseException) -> RouteError:
    """The RouteError that carries LangGraph's control-flow `exc` out of a route, as its cause.

    The router makes any other exception from a model a failed step; this one ends the route.
    """
    return RouteError(f"LangGraph's {type(exc).__name__} ends the route; it is the cause")


def as_model_error(exc: Exception, model: str, source: str) -> ModelError:
    """The demur error for an exception raised by a LangChain model or runnable.

    `model` is the demur model's name and `source` what it wraps (e.g. 'ChatOpenAI').
    """
    if isinstance(exc, ModelError):
        return exc
    what = f"{type(exc).__name__}: {_snippet(str(exc)) or 'no detail'}"
    where = f"{model} ({source}) failed with {what}."
    status, names = _status(exc), _names(exc)
    if isinstance(exc, TimeoutError) or "timeout" in names or status == 408:
        return ModelTimeoutError(
            f"{where} The call timed out; raise the model's timeout or check the provider.",
            model=model,
        )
    if status == 429 or "ratelimit" in names:
        return RateLimitError(
            f"{where} The provider asks to slow down; lower the request rate.", model=model
        )
    if status is not None and status >= 500:
        return ServerError(
            f"{where} The provider failed on its side; retrying may help.", model=model
        )
    if status == 404 or "notfound" in names:
        return ModelNotFoundError(
            f"{where} Check the model name and the endpoint the chat model points at.",
            model=model,
        )
    if _OVERFLOW.search(str(exc)):
        return ContextOverflowError(
            f"{where} Shorten the conversation or route to a model with a longer context.",
            model=model,
        )
    if status in (401, 403) or "authentication" in names or "permissiondenied" in names:
        return PermanentModelError(
            f"{where} The provider refused the credentials; check the API key.", model=model
        )
    if isinstance(exc, ConnectionError) or "connection" in names:
        return ServerError(
            f"{where} The connection failed; check that the provider is reachable.",
            model=model,
        )
    return PermanentModelError(f"{where} demur does not retry this error.", model=model)


__all__ = ["OutputNotTextError", "as_model_error", "is_control_flow", "passed_through"]

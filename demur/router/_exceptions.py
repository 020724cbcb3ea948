"""Exceptions as spans and logs show them: the type always, the message only as content.

An exception's message can quote the prompt, the answer, or a file path, so it is treated
like span content: recorded (through the redactor) only when `capture_content` is on. Without
it a span gets the exception's type and the frames of its stack, and a log line its type.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from opentelemetry.trace import Span, Status, StatusCode

Redactor = Callable[[str], str]


def exception_type(exc: BaseException) -> str:
    """The exception's type as OpenTelemetry names it (`module.Qualname`, builtins bare)."""
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "") else f"{module}.{kind.__qualname__}"


def describe_exception(exc: BaseException, capture_content: bool, redact: Redactor) -> str:
    """`exc` for a log line: `Type: message` with content captured, else `Type` alone."""
    if capture_content:
        return f"{type(exc).__name__}: {redact(str(exc))}"
    return f"{type(exc).__name__} (its message is withheld while capture_content is off)"


def record_exception(
    span: Span, exc: BaseException, capture_content: bool, redact: Redactor
) -> None:
    """An `exception` event on `span`, with the message and full trace only as content."""
    if not span.is_recording():
        return
    if capture_content:
        span.record_exception(
            exc,
            attributes={
                "exception.message": redact(str(exc)),
                "exception.stacktrace": redact("".join(traceback.format_exception(exc))),
            },
        )
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    span.add_event(
        "exception",
        {
            "exception.type": exception_type(exc),
            "exception.stacktrace": f"Traceback (most recent call last):\n{frames}"
            f"{exception_type(exc)}",
            "exception.escaped": "False",
        },
    )


def mark_failed(span: Span, exc: BaseException, capture_content: bool, redact: Redactor) -> None:
    """Record `exc` on `span` with `error.type` and an ERROR status (the GenAI conventions)."""
    if not span.is_recording():
        return
    record_exception(span, exc, capture_content, redact)
    span.set_attribute("error.type", type(exc).__qualname__)
    message = f": {redact(str(exc))}" if capture_content else ""
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}{message}"))


__all__ = ["describe_exception", "exception_type", "mark_failed", "record_exception"]

"""From a verdict to a response: the text and finish reason the client sees, the `x-demur-*`
headers, the upstream failure a route without any answer is, and the SSE stream of the gated
text."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from demur.server.errors import JSON
from demur.server.openai_schema import (
    ChatCompletionChunk,
    ChunkChoice,
    CompletionUsage,
    Delta,
    DemurInfo,
)
from demur.types import Verdict

HUMAN_REVIEW = "human_review"  # the finish_reason of a question handed to a person
_TIMEOUTS = {"ModelTimeoutError", "DeadlineExceededError"}
_PIECES = re.compile(r"\S*\s*")


def json_response(content: Any, status: int = 200) -> Response:
    return Response(json.dumps(content), status_code=status, media_type=JSON)


def reply(verdict: Verdict, *, pending_message: str, abstain_message: str) -> tuple[str, str]:
    """The text the client sees and its finish_reason.

    An answer as it stands ("length" when the answering model was cut off); for a pending
    verdict `pending_message` with its ticket id, finishing with "human_review" so that no
    client mistakes it for an answer; otherwise the abstention's text.
    """
    if verdict.status == "answered":
        finish = "stop"
        for step in reversed(verdict.steps):
            candidate = step.candidate
            if candidate is not None and step.model == verdict.model:
                if candidate.finish_reason == "length":
                    finish = "length"
                break
        return verdict.text, finish
    if verdict.status == "pending":
        return pending_message.replace("{ticket_id}", verdict.ticket_id or ""), HUMAN_REVIEW
    return verdict.text or abstain_message, "stop"


def upstream_failure(verdict: Verdict) -> tuple[int, str] | None:
    """(status, message) when no model answered at all, else None (a verdict to return)."""
    if verdict.status != "abstained" or not verdict.steps:
        return None
    if any(step.candidate is not None for step in verdict.steps):
        return None
    last = verdict.steps[-1]
    failures = ", ".join(f"{s.model}: {s.error_type}" for s in verdict.steps)
    if last.error_type in _TIMEOUTS:
        return 504, f"no model answered in time ({failures}); retry later"
    return 502, f"no model could answer ({failures}); the upstream is failing, retry later"


def demur_headers(verdict: Verdict, request_id: str) -> dict[str, str]:
    headers = {
        "x-request-id": request_id,
        "x-demur-action": verdict.action,
        "x-demur-status": verdict.status,
    }
    if verdict.confidence is not None:
        headers["x-demur-confidence"] = f"{verdict.confidence:.6f}"
    if verdict.model is not None:
        headers["x-demur-model"] = verdict.model
    if verdict.trace_id is not None:
        headers["x-demur-trace-id"] = verdict.trace_id
    if verdict.ticket_id is not None:
        headers["x-demur-ticket-id"] = verdict.ticket_id
    return headers


async def sse_events(
    request_id: str,
    model: str,
    content: str,
    finish: str,
    info: DemurInfo,
    usage: CompletionUsage,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The gated text as OpenAI chat.completion.chunk events, a word at a time."""
    created = int(time.time())

    def event(choices: list[ChunkChoice], **extra: Any) -> bytes:
        chunk = ChatCompletionChunk(
            id=request_id, created=created, model=model, choices=choices, **extra
        )
        skip = {name for name in ("usage", "demur") if getattr(chunk, name) is None}
        if include_usage:
            skip.discard("usage")  # OpenAI sends usage: null on every chunk but the last
        return b"data: " + chunk.model_dump_json(exclude=skip).encode() + b"\n\n"

    yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
    for piece in filter(None, _PIECES.findall(content)):
        yield event([ChunkChoice(delta=Delta(content=piece))])
    yield event([ChunkChoice(delta=Delta(), finish_reason=finish)], demur=info)
    if include_usage:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


__all__ = [
    "HUMAN_REVIEW",
    "demur_headers",
    "json_response",
    "reply",
    "sse_events",
    "upstream_failure",
]

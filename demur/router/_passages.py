"""Making passages fit a model's context window: how much of the last passage to keep."""

from __future__ import annotations

from demur.errors import ContextOverflowError
from demur.types import GenerationRequest


def request_chars(request: GenerationRequest) -> int:
    if request.messages is not None:
        return sum(len(m.content) for m in request.messages)
    return len(request.prompt or "")


def trimmed_passage(text: str, overflow: ContextOverflowError, prompt_chars: int) -> str:
    """The passage cut at a word boundary short enough to fit, estimated from the overflow.

    Without usable token counts from the backend the passage is halved; the caller tries again
    until the prompt fits or nothing is left.
    """
    tokens, limit = overflow.prompt_tokens, overflow.limit
    if tokens and limit is not None and tokens > limit:
        chars_per_token = prompt_chars / tokens
        keep = len(text) - int((tokens - limit + 8) * chars_per_token * 1.1)
    else:
        keep = len(text) // 2
    if keep >= len(text):  # counts that would not shorten it are no estimate
        keep = len(text) // 2
    if keep <= 0:
        return ""
    cut = text.rfind(" ", 0, keep)
    return text[: cut if cut > 0 else keep].rstrip()

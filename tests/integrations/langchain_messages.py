"""AIMessages with OpenAI-style logprobs, as LangChain chat models return them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage


def reply(text: str, probability: float | Sequence[float] | None = None, **extra: Any) -> AIMessage:
    """An AIMessage whose tokens are the words of `text`, each with `probability` (one for all,
    or one per word); no logprobs when `probability` is None."""
    metadata: dict[str, Any] = {}
    if probability is not None:
        words = text.split()
        each = [probability] * len(words) if isinstance(probability, int | float) else probability
        metadata["logprobs"] = {
            "content": [
                {"token": word, "logprob": math.log(p), "top_logprobs": []}
                for word, p in zip(words, each, strict=True)
            ]
        }
    return AIMessage(content=text, response_metadata=metadata, **extra)

"""Prompts turn a Query into the text a model sees.

Instruction-tuned models get a `ChatPrompt` (system and user messages); base models get a
`CompletionPrompt` (a few-shot text the model continues).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from demur.types import GenerationRequest, Message, Query

DEFAULT_SYSTEM = (
    "You answer questions with a short phrase: a name, a number, a date or a few words. "
    "Use the passage when one is given. Do not explain."
)


def _context_block(query: Query) -> str:
    if not query.context:
        return ""
    return "\n\n".join(query.context)


class Prompt(Protocol):
    """Renders a query into a request; the router adds sampling and logprob settings."""

    def render(self, query: Query) -> GenerationRequest: ...


class ChatPrompt(BaseModel):
    """System and user messages for a chat model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["chat"] = "chat"
    system: str = DEFAULT_SYSTEM
    user: str = "Question: {question}"
    user_with_context: str = "Passage: {context}\n\nQuestion: {question}"
    stop: tuple[str, ...] = ("\n",)

    def render(self, query: Query) -> GenerationRequest:
        template = self.user_with_context if query.context else self.user
        user = template.format(question=query.question, context=_context_block(query))
        messages = [Message(role="user", content=user)]
        if self.system:
            messages.insert(0, Message(role="system", content=self.system))
        return GenerationRequest(messages=tuple(messages), stop=self.stop)


class FewShotExample(BaseModel):
    """One worked example for a CompletionPrompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    answer: str
    context: str | None = None


DEFAULT_EXAMPLES: tuple[FewShotExample, ...] = (
    FewShotExample(
        context="The Eiffel Tower is a wrought-iron tower in Paris, completed in 1889.",
        question="In which city is the Eiffel Tower?",
        answer="Paris",
    ),
    FewShotExample(
        context="Jane Austen published Emma in 1815; it was her fourth novel.",
        question="Who wrote Emma?",
        answer="Jane Austen",
    ),
    FewShotExample(
        context="Mount Kilimanjaro, in Tanzania, rises 5,895 metres above sea level.",
        question="How high is Mount Kilimanjaro?",
        answer="5,895 metres",
    ),
)


class CompletionPrompt(BaseModel):
    """A few-shot text prompt for base (not instruction-tuned) models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["few_shot"] = "few_shot"
    examples: Sequence[FewShotExample] = DEFAULT_EXAMPLES
    stop: tuple[str, ...] = ("\n",)

    def _block(self, question: str, context: str | None, answer: str | None) -> str:
        lines = [f"Passage: {context}"] if context else []
        lines.append(f"Question: {question}")
        lines.append("Answer:" + (f" {answer}" if answer is not None else ""))
        return "\n".join(lines)

    def render(self, query: Query) -> GenerationRequest:
        context = _context_block(query) or None
        shots = [
            self._block(e.question, e.context if context else None, e.answer) for e in self.examples
        ]
        shots.append(self._block(query.question, context, None))
        return GenerationRequest(prompt="\n\n".join(shots), stop=self.stop)

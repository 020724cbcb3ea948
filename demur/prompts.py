"""Prompts turn a Query into the text a model sees.

Instruction-tuned models get a `ChatPrompt` (system and user messages); base models get a
`CompletionPrompt` (a few-shot text the model continues).
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from demur._construct import construct
from demur.types import GenerationRequest, Message, Query

DEFAULT_SYSTEM = (
    "You answer questions with a short phrase: a name, a number, a date or a few words. "
    "Use the passage when one is given. Do not explain."
)

BRIEF_SYSTEM = (
    "Answer the question, using the passage when one is given. Reply with only the answer: "
    "a short phrase such as a name, a number or a date, with no explanation."
)


def _context_block(query: Query) -> str:
    if not query.context:
        return ""
    return "\n\n".join(query.context)


class Prompt(Protocol):
    """Renders a query into a request; the router adds sampling and logprob settings."""

    def render(self, query: Query) -> GenerationRequest: ...


class FewShotExample(BaseModel):
    """One worked example for a CompletionPrompt."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

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
    FewShotExample(
        context="Lionel Messi is an Argentine footballer. Cristiano Ronaldo is a Portuguese "
        "footballer.",
        question="Are Lionel Messi and Cristiano Ronaldo of the same nationality?",
        answer="no",
    ),
    FewShotExample(
        context="The Beatles formed in Liverpool in 1960. The Rolling Stones formed in London "
        "in 1962.",
        question="Which band formed first, the Beatles or the Rolling Stones?",
        answer="The Beatles",
    ),
)


class ChatPrompt(BaseModel):
    """System and user messages for a chat model, optionally after worked examples.

    Each example becomes a user turn and an assistant turn before the real question, which
    teaches small chat models the expected length and form of an answer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: Literal["chat"] = "chat"
    system: str = DEFAULT_SYSTEM
    user: str = "Question: {question}"
    user_with_context: str = "Passage: {context}\n\nQuestion: {question}"
    examples: tuple[FewShotExample, ...] = ()
    stop: tuple[str, ...] = ("\n",)

    def _user(self, question: str, context: str | None) -> Message:
        template = self.user_with_context if context else self.user
        content = template.format(question=question, context=context)
        return construct(Message, role="user", content=content)

    def render(self, query: Query) -> GenerationRequest:
        # Every part is a validated string: the messages are built without validating again.
        context = _context_block(query) or None
        messages = [construct(Message, role="system", content=self.system)] if self.system else []
        for example in self.examples:
            messages.append(self._user(example.question, example.context if context else None))
            messages.append(construct(Message, role="assistant", content=example.answer))
        messages.append(self._user(query.question, context))
        return construct(GenerationRequest, messages=tuple(messages), stop=self.stop)


class CompletionPrompt(BaseModel):
    """A few-shot text prompt for base (not instruction-tuned) models."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: Literal["few_shot"] = "few_shot"
    examples: tuple[FewShotExample, ...] = DEFAULT_EXAMPLES
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
        return construct(GenerationRequest, prompt="\n\n".join(shots), stop=self.stop)

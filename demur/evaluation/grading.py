"""A model as a grader: asks it whether an answer matches the gold answers."""

from __future__ import annotations

from collections.abc import Sequence

from demur.errors import ModelError
from demur.prompts import CompletionPrompt
from demur.protocols import Model
from demur.types import GenerationRequest, Message

_INSTRUCTION = (
    "Decide whether the proposed answer to the question means the same as one of the "
    "reference answers. Reply with one word: yes or no."
)


class JudgeGrader:
    """Grades with a model; falls back to lexical grading when the judge gives no yes/no."""

    def __init__(self, model: Model, *, fallback: str = "auto") -> None:
        self.model = model
        self.fallback = fallback

    def _request(self, question: str, answer: str, golds: Sequence[str]) -> GenerationRequest:
        body = (
            f"Question: {question}\nReference answers: {' | '.join(golds)}\n"
            f"Proposed answer: {answer}\nSame meaning (yes or no):"
        )
        if isinstance(self.model.default_prompt, CompletionPrompt):
            return GenerationRequest(prompt=f"{_INSTRUCTION}\n\n{body}", max_tokens=3)
        messages = (
            Message(role="system", content=_INSTRUCTION),
            Message(role="user", content=body),
        )
        return GenerationRequest(messages=messages, max_tokens=3)

    async def agrade(self, question: str, answer: str | None, golds: Sequence[str]) -> bool:
        from demur.correctness import grade

        if not answer or not answer.strip():
            return False
        try:
            generation = await self.model.agenerate(self._request(question, answer, golds))
        except ModelError:
            return grade(answer, golds, self.fallback)
        reply = generation.completions[0].text.strip().lower()
        if reply.startswith("yes"):
            return True
        if reply.startswith("no"):
            return False
        return grade(answer, golds, self.fallback)

"""Your own model, estimator, policy and retriever, each one method on a demur base class.

    python examples/custom_components.py

The file is type-checked with `mypy --strict` alongside demur itself.
"""

from __future__ import annotations

import re

from demur import (
    Abstain,
    Accept,
    Attempt,
    Completion,
    Decision,
    Document,
    Escalate,
    EstimatorBase,
    Generation,
    GenerationRequest,
    ModelBase,
    PolicyBase,
    RetrieverBase,
    Router,
    RouteState,
    Score,
)

CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid"}


class LookupModel(ModelBase):
    """Answers for the country the prompt names last (the question) if its table knows it."""

    def __init__(self, name: str, table: dict[str, str]) -> None:
        self.name = name
        self.table = table

    async def agenerate(self, request: GenerationRequest) -> Generation:
        prompt = request.prompt or " ".join(m.content for m in request.messages or ())
        last = max(CAPITALS, key=prompt.rfind)
        text = self.table.get(last, "Berlin") if last in prompt else "I do not know"
        return Generation(model=self.name, completions=(Completion(text=text),))


class InTopPassage(EstimatorBase):
    """Confident when the answer occurs in the best retrieved passage."""

    name = "in_top_passage"
    in_process = True

    def estimate(self, attempt: Attempt) -> Score:
        documents = attempt.candidate.documents
        found = bool(documents) and attempt.candidate.text in documents[0].text
        return Score(estimator=self.name, confidence=0.9 if found else 0.2)


class EscalateOnce(PolicyBase):
    """Accept a confident answer; otherwise ask the strong model once, then give up."""

    name = "escalate-once"

    def decide(self, state: RouteState) -> Decision:
        confidence = state.current.confidence or 0.0
        if confidence >= 0.5:
            return Decision(action=Accept(), reason=f"confidence {confidence:.2f} >= 0.5")
        if "strong" not in state.attempted:
            return Decision(action=Escalate("strong"), reason="not confident: ask strong")
        return Decision(action=Abstain(), reason="strong was not confident either")


class Atlas(RetrieverBase):
    """A retriever over a fixed list of passages: every passage, scored by shared words."""

    name = "atlas"
    languages = "English"

    def __init__(self, passages: list[str]) -> None:
        self.passages = passages

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]:
        words = set(re.findall(r"\w+", query.lower()))
        scored = sorted(
            (len(words & set(re.findall(r"\w+", p.lower()))) / len(words), p) for p in self.passages
        )
        return tuple(
            Document(id=f"atlas-{i}", text=text, score=score)
            for i, (score, text) in enumerate(reversed(scored[-k:]))
        )


def main() -> None:
    weak = LookupModel("weak", {"France": "Paris"})
    strong = LookupModel("strong", CAPITALS)
    atlas = Atlas(["Rome is the capital of Italy.", "Paris is the capital of France."])
    with Router(
        [weak, strong], estimators=[InTopPassage()], policy=EscalateOnce(), retrievers=[atlas]
    ) as router:
        for question in ("What is the capital of France?", "What is the capital of Italy?"):
            verdict = router.route(question)
            print(f"{question} -> {verdict.status}: {verdict.text} ({verdict.model})")


if __name__ == "__main__":
    main()

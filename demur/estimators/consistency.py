"""Self-consistency: an answer the model gives again and again, when sampled, is more trustworthy.

Black-box: it needs only the extra samples the router draws once per attempt and shares with
every estimator (see `Needs.samples`), not logprobs.
"""

from __future__ import annotations

from demur.bases import EstimatorBase
from demur.errors import EstimatorUnavailable, check_range
from demur.estimators.similarity import (
    check_similarity,
    resolve_embedder,
    similarities_to,
)
from demur.protocols import Attempt, Embedder, Needs
from demur.types import Score


def check_samples(owner: str, samples: int) -> int:
    """`samples` when it is a valid sample count; ConfigError naming `owner` otherwise."""
    return check_range(owner, "samples", samples, 1, 100, integer=True)


def answer_and_samples(attempt: Attempt, name: str, limit: int) -> tuple[str, tuple[str, ...]]:
    """The answer and up to `limit` sample texts; EstimatorUnavailable when either is missing.

    Only the first `limit` samples count, so a score does not change when another estimator
    in the same router asks for more samples.
    """
    answer = attempt.candidate.text
    if not answer.strip():
        raise EstimatorUnavailable(f"{name} cannot score an empty answer")
    samples = tuple(s.text for s in attempt.candidate.samples[:limit])
    if not samples:
        raise EstimatorUnavailable(
            f"{name} needs sampled answers and the attempt has none "
            "(the sampling calls failed, or the attempt was scored outside a Router)"
        )
    return answer, samples


class SampleAgreement(EstimatorBase):
    """Mean similarity of the samples to the answer.

    `value` and `confidence` are both that mean, in [0, 1]: 1 when every sample says what
    the answer says. The name carries the measure (`agreement_rougeL`), so several
    measures can score the same attempt side by side. With an embedder, the embedding model
    runs in a worker thread, so the router's event loop keeps serving meanwhile.
    """

    def __init__(
        self,
        similarity: str = "rougeL",
        samples: int = 5,
        embedder: Embedder | str | None = None,
    ) -> None:
        self.embedder = resolve_embedder(embedder)
        self.similarity = check_similarity(similarity, self.embedder)
        self.samples = check_samples(type(self).__name__, samples)
        self.name = f"agreement_{self.similarity}"
        self.needs = Needs(samples=samples)
        self.in_process = self.embedder is None

    def estimate(self, attempt: Attempt) -> Score:
        answer, samples = answer_and_samples(attempt, self.name, self.samples)
        mean = float(similarities_to(answer, samples, self.similarity, self.embedder).mean())
        return Score(
            estimator=self.name,
            value=mean,
            confidence=min(1.0, max(0.0, mean)),
            detail=f"mean {self.similarity} similarity of {len(samples)} samples to the answer",
        )

    def __repr__(self) -> str:
        return f"SampleAgreement(similarity={self.similarity!r}, samples={self.samples})"


__all__ = ["SampleAgreement", "answer_and_samples", "check_samples"]

"""Retrieval confidence: how close the retrieved passages came to the question.

When even the best passage is far from the question, the answer written from it is less likely
to be right (the knowledge base may not hold the answer at all). Three statistics of the
passages' similarity scores, by name:

- "top1": the best passage's similarity;
- "margin": the best minus the second best; a clear winner against a crowd of look-alikes;
- "mean": the mean similarity of the top `k` passages, how much relevant material there is.

The scores are the retriever's own (cosine similarity for demur's embedding retrievers), so
they mean nothing across retrievers: fit a calibrator per retriever.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from demur.bases import EstimatorBase
from demur.errors import ConfigError, EstimatorUnavailable, unknown_name
from demur.protocols import NOTHING, Attempt, Needs
from demur.types import Document, Score

Statistic = Literal["top1", "margin", "mean"]
STATISTICS: tuple[Statistic, ...] = get_args(Statistic)


def document_scores(documents: tuple[Document, ...]) -> list[float]:
    """The finite similarity scores of `documents`, highest first; unscored ones are skipped."""
    scores = [d.score for d in documents if d.score is not None and math.isfinite(d.score)]
    return sorted(scores, reverse=True)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


class RetrievalSimilarity(EstimatorBase):
    """Confidence from the similarity scores of the candidate's retrieved passages.

    `statistic` is "top1", "margin" or "mean" (of the top `k`); the estimator is named
    `retrieval_<statistic>`. `value` is the raw statistic; `confidence` is that value clipped
    to [0, 1]. The clip is monotone, so it keeps the ranking that thresholds and calibrators
    need, and for cosine scores it only drops what is already hopeless (a negative cosine, an
    unrelated passage). It is not a probability: fit a calibrator on labelled answers for that.

    Unavailable for a closed-book answer (no passages) and for passages without scores (the
    caller's own context). "margin" needs two scored passages; "mean" averages those there are
    when fewer than `k`.
    """

    needs: Needs = NOTHING
    in_process = True

    def __init__(self, statistic: Statistic = "top1", k: int = 5) -> None:
        if statistic not in STATISTICS:
            raise unknown_name("retrieval statistic", statistic, STATISTICS)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(
                f"RetrievalSimilarity(k={k!r}): k is how many top passages 'mean' averages; "
                "pass a positive integer, e.g. k=5"
            )
        self.statistic: Statistic = statistic
        self.k = k
        self.name = f"retrieval_{statistic}"

    def compute(self, scores: list[float]) -> tuple[float, str]:
        """The statistic of non-empty scores sorted highest first, and a detail line."""
        if self.statistic == "top1":
            return scores[0], f"top-1 similarity {scores[0]:.4g} of {len(scores)} passages"
        if self.statistic == "margin":
            if len(scores) < 2:
                raise EstimatorUnavailable(
                    f"{self.name} compares the two best passages, and only one has a score; "
                    "retrieve k >= 2 passages"
                )
            margin = scores[0] - scores[1]
            return margin, f"top-1 {scores[0]:.4g} minus top-2 {scores[1]:.4g}"
        top = scores[: self.k]
        mean = sum(top) / len(top)
        return mean, f"mean similarity of the top {len(top)} of {len(scores)} passages"

    def estimate(self, attempt: Attempt) -> Score:
        documents = attempt.candidate.documents
        if not documents:
            raise EstimatorUnavailable(
                f"{self.name} reads retrieval scores, and this answer was written without "
                "retrieved passages (closed-book); give the router a retriever"
            )
        scores = document_scores(documents)
        if not scores:
            raise EstimatorUnavailable(
                f"{self.name} reads retrieval scores, and none of the {len(documents)} passages "
                "has one (context supplied by the caller carries no similarity); use "
                "groundedness to score answers from the caller's context"
            )
        value, detail = self.compute(scores)
        return Score(estimator=self.name, value=value, confidence=_clip(value), detail=detail)

    def __repr__(self) -> str:
        return f"RetrievalSimilarity(statistic={self.statistic!r}, k={self.k})"


__all__ = ["STATISTICS", "RetrievalSimilarity", "Statistic", "document_scores"]

"""Semantic dispersion of the sampled answers: many distinct meanings, little confidence.

The nodes are the answer (node 0) and its samples, m texts in all; W is their matrix of
pairwise similarities (see demur.estimators.similarity), with a unit diagonal.

- Semantic sets: greedy clustering as in semantic entropy (Kuhn et al., 2023): each text
  joins the first set whose representative (its first member) it matches, that is whose
  similarity reaches `threshold`, else starts a set. The measures are symmetric, so a match
  stands for the bidirectional equivalence of the original algorithm.
- The dispersion family of Lin, Trivedi & Sun, "Generating with Confidence: Uncertainty
  Quantification for Black-box LLMs" (2023): NumSets, degree, eccentricity and EigV, the
  last two from the spectrum of the normalised graph Laplacian L = I - D^-1/2 W D^-1/2,
  where D is the diagonal matrix of degrees (row sums of W).
- Semantic entropy over the sets of the samples.

Each estimator's `value` is its question-level uncertainty (higher: less certain), taken as
in the papers but over the answer and its samples together (semantic entropy: over the
samples); its `confidence`, in [0, 1], is documented on the class. Every estimator needs at
least one sample, and reads only the first `samples` of those the router drew.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from demur.bases import EstimatorBase
from demur.errors import ConfigError, EstimatorUnavailable, check_range
from demur.estimators.consistency import answer_and_samples, check_samples
from demur.estimators.similarity import (
    Similarity,
    check_similarity,
    resolve_embedder,
    similarity_matrix,
)
from demur.protocols import Attempt, Embedder, Needs
from demur.types import Score, TokenLogprob

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[np.float64]

# Similarity from which two texts count as meaning the same, per measure.
DEFAULT_CLUSTER_THRESHOLDS: dict[Similarity, float] = {
    "exact": 1.0,
    "jaccard": 0.5,
    "rougeL": 0.5,
    "embedding": 0.8,
}

# Eigenvalues of L below this carry the cluster structure (Lin et al.'s setting).
DEFAULT_EIGENVALUE_THRESHOLD = 0.9


# --- the computations, on a similarity matrix ------------------------------------------------


def semantic_sets(similarity: Matrix, threshold: float) -> tuple[int, ...]:
    """The set label of each text: greedy clustering against each set's first member."""
    representatives: list[int] = []
    labels: list[int] = []
    for i in range(similarity.shape[0]):
        for label, first in enumerate(representatives):
            if similarity[i, first] >= threshold:
                labels.append(label)
                break
        else:
            labels.append(len(representatives))
            representatives.append(i)
    return tuple(labels)


def degrees(similarity: Matrix) -> Vector:
    """Each node's degree D_jj: the row sums of W."""
    return np.asarray(similarity.sum(axis=1), dtype=np.float64)


def degree_uncertainty(similarity: Matrix) -> float:
    """U_Deg = trace(m I - D) / m^2: 0 when all texts agree, near 1 when none does."""
    m = similarity.shape[0]
    return float((m * m - degrees(similarity).sum()) / (m * m))


def normalized_laplacian(similarity: Matrix) -> Matrix:
    """L = I - D^-1/2 W D^-1/2 of the symmetrised similarity graph."""
    w = (similarity + similarity.T) / 2
    scale = 1.0 / np.sqrt(w.sum(axis=1))  # degrees >= 1: the diagonal is 1
    laplacian: Matrix = np.eye(w.shape[0]) - scale[:, None] * w * scale[None, :]
    return laplacian


def laplacian_spectrum(similarity: Matrix) -> tuple[Vector, Matrix]:
    """Eigenvalues of L in ascending order, and the eigenvectors as columns."""
    eigenvalues, eigenvectors = np.linalg.eigh(normalized_laplacian(similarity))
    return eigenvalues, eigenvectors


def eigv(similarity: Matrix) -> float:
    """U_EigV = sum over eigenvalues of L of max(0, 1 - lambda): a soft count of meanings.

    For k disconnected cliques it is exactly k; it lies in [1, m].
    """
    eigenvalues, _ = laplacian_spectrum(similarity)
    return float(np.clip(1.0 - eigenvalues, 0.0, None).sum())


def eccentricity(
    similarity: Matrix, eigenvalue_threshold: float = DEFAULT_EIGENVALUE_THRESHOLD
) -> tuple[float, Vector]:
    """(U_Ecc, each node's distance from the centre) in the spectral embedding.

    Node j is embedded as row j of the eigenvectors of L whose eigenvalues fall below the
    threshold; U_Ecc is the norm of all centred embeddings together. The eigenvectors are
    orthonormal, so a node's distance from the centre is at most sqrt(1 - 1/m), reached by
    a lone text against unanimous others; the distances do not depend on which basis
    `eigh` picks for a repeated eigenvalue.
    """
    eigenvalues, eigenvectors = laplacian_spectrum(similarity)
    embedding = eigenvectors[:, eigenvalues < eigenvalue_threshold]
    centred = embedding - embedding.mean(axis=0)
    return float(np.linalg.norm(centred)), np.linalg.norm(centred, axis=1)


def sequence_logprob(tokens: Sequence[TokenLogprob]) -> float:
    """Length-normalised log-probability of a text: the mean of its token logprobs."""
    return sum(t.logprob for t in tokens) / len(tokens)


def set_probabilities(
    labels: Sequence[int], logprobs: Sequence[float] | None = None, *, sets: int | None = None
) -> Vector:
    """The probability of each of `sets` sets (default: max(labels) + 1) from its members.

    A set's probability is its share of the texts or, given each text's sequence
    log-probability, the sum of its members' probabilities normalised over the sets.
    """
    count = max(labels) + 1 if sets is None else sets
    if logprobs is None:
        weights = np.ones(len(labels))
    else:
        values = np.asarray(logprobs, dtype=np.float64)
        weights = np.exp(values - values.max())  # scaled for stability; cancels out
    totals = np.bincount(np.asarray(labels, dtype=np.intp), weights=weights, minlength=count)
    probabilities: Vector = totals / totals.sum()
    return probabilities


def entropy(probabilities: Vector) -> float:
    """Shannon entropy in nats."""
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())


# --- the estimators --------------------------------------------------------------------------


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _check_threshold(owner: str, measure: Similarity, threshold: float | None) -> float:
    if threshold is None:
        return DEFAULT_CLUSTER_THRESHOLDS[measure]
    return check_range(owner, "threshold", threshold, 0.0, 1.0, lo_open=True)


class SemanticEstimator(EstimatorBase):
    """Base of the estimators that score the answer against its samples' similarity graph.

    With an embedder, the embedding model runs in a worker thread, off the event loop.
    """

    name: str = "semantic"

    def __init__(
        self,
        similarity: str = "rougeL",
        samples: int = 5,
        embedder: Embedder | str | None = None,
    ) -> None:
        self.embedder = resolve_embedder(embedder)
        self.similarity: Similarity = check_similarity(similarity, self.embedder)
        self.samples = check_samples(type(self).__name__, samples)
        self.needs = Needs(samples=samples)
        self.in_process = self.embedder is None

    @abstractmethod
    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        """(uncertainty, confidence, detail) from W over [answer, *samples], m >= 2."""

    def estimate(self, attempt: Attempt) -> Score:
        answer, samples = answer_and_samples(attempt, self.name, self.samples)
        matrix = similarity_matrix((answer, *samples), self.similarity, self.embedder)
        value, confidence, detail = self.compute(matrix, attempt)
        return Score(estimator=self.name, value=value, confidence=_clip(confidence), detail=detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(similarity={self.similarity!r}, samples={self.samples})"


class NumSets(SemanticEstimator):
    """The number of semantic sets among the answer and its samples.

    Confidence is 1 - (sets - 1) / (m - 1): 1 when all m texts share one meaning, 0 when
    each has its own. It is a question-level score: it does not ask which set the answer is in.
    """

    name = "num_sets"

    def __init__(
        self,
        similarity: str = "rougeL",
        samples: int = 5,
        embedder: Embedder | str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(similarity, samples, embedder)
        self.threshold = _check_threshold(type(self).__name__, self.similarity, threshold)

    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        m = similarity.shape[0]
        sets = max(semantic_sets(similarity, self.threshold)) + 1
        return float(sets), 1.0 - (sets - 1) / (m - 1), f"{sets} semantic sets among {m} texts"


class Degree(SemanticEstimator):
    """The degree matrix of the similarity graph.

    `value` is U_Deg = trace(m I - D) / m^2. Confidence is the answer's C_Deg = D_00 / m, its
    mean similarity to all m texts, itself included: 1 when every sample matches it, and no
    lower than 1/m. (Leaving itself out would make it equal to SampleAgreement.)
    """

    name = "degree"

    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        m = similarity.shape[0]
        answer_degree = float(degrees(similarity)[0])
        detail = f"answer degree {answer_degree:.3g} of {m}"
        return degree_uncertainty(similarity), answer_degree / m, detail


class Eccentricity(SemanticEstimator):
    """How far the answer sits from the centre of the spectral embedding of the graph.

    `value` is U_Ecc, the norm of all centred node embeddings. Confidence is
    1 - d / sqrt(1 - 1/m), d the answer's distance from the centre (C_Ecc = -d): the bound
    is d's largest possible value, reached by an answer alone against unanimous samples, so
    the confidence spans [0, 1], 1 meaning the answer sits at the centre.
    """

    name = "eccentricity"

    def __init__(
        self,
        similarity: str = "rougeL",
        samples: int = 5,
        embedder: Embedder | str | None = None,
        eigenvalue_threshold: float = DEFAULT_EIGENVALUE_THRESHOLD,
    ) -> None:
        super().__init__(similarity, samples, embedder)
        self.eigenvalue_threshold = check_range(
            "Eccentricity",
            "eigenvalue_threshold",
            eigenvalue_threshold,
            0.0,
            2.0,
            lo_open=True,
            hint="the eigenvalues of a normalised Laplacian lie in [0, 2]",
        )

    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        m = similarity.shape[0]
        spread, distances = eccentricity(similarity, self.eigenvalue_threshold)
        distance = float(distances[0])
        detail = f"answer {distance:.3g} from the centre of {m} texts"
        return spread, 1.0 - distance / math.sqrt(1.0 - 1.0 / m), detail


class EigV(SemanticEstimator):
    """The sum of max(0, 1 - lambda_k) over the eigenvalues of L: a soft number of meanings.

    EigV is a continuous NumSets (equal to it for disconnected cliques), so its confidence
    uses the same map: 1 - (EigV - 1) / (m - 1), 1 for one meaning, 0 for m, so the two
    read alike against one threshold (1/EigV would never fall below 1/m). Like NumSets it is
    question-level.
    """

    name = "eigv"

    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        m = similarity.shape[0]
        value = eigv(similarity)
        return value, 1.0 - (value - 1.0) / (m - 1), f"about {value:.3g} meanings among {m} texts"


ConfidenceKind = Literal["cluster", "entropy"]


class SemanticEntropy(SemanticEstimator):
    """Entropy over the semantic sets of the samples (Kuhn et al., 2023).

    The answer is clustered with the samples, as the first text, but only the samples carry
    probability: they are the draws from the model's distribution, while the greedy answer
    is its mode, whose sequence probability would swamp theirs. A set's probability is the
    sum of its samples' sequence probabilities, normalised over the sets, when every sample
    carries token logprobs (each sample's probability is its length-normalised one, exp of
    the mean token logprob, as in Farquhar et al., 2024); otherwise, or with
    `use_logprobs=False`, it is the set's share of the samples (discrete semantic entropy).
    `value` is the entropy in nats.

    Confidence, by `confidence`:
    - "cluster" (default): the probability of the answer's set, 0 when no sample means what
      the answer means. The router decides on this answer: an answer outside the prevailing
      meaning is doubtful even when the samples agree among themselves and the entropy is
      low; and a probability reads directly against a threshold.
    - "entropy": 1 - SE / log(k) for k >= 2 samples, the question-level score; log(k) is the
      largest entropy k samples can have.
    """

    name = "semantic_entropy"

    def __init__(
        self,
        similarity: str = "rougeL",
        samples: int = 5,
        embedder: Embedder | str | None = None,
        threshold: float | None = None,
        use_logprobs: bool = True,
        confidence: ConfidenceKind = "cluster",
    ) -> None:
        super().__init__(similarity, samples, embedder)
        self.threshold = _check_threshold(type(self).__name__, self.similarity, threshold)
        if confidence not in ("cluster", "entropy"):
            raise ConfigError(
                f"SemanticEntropy(confidence={confidence!r}): choose 'cluster' (the answer's "
                "set probability) or 'entropy' (1 - SE / log k)"
            )
        if confidence == "entropy" and samples < 2:
            raise ConfigError(
                "SemanticEntropy(confidence='entropy') normalises by log(samples): "
                f"ask for samples >= 2, got {samples}"
            )
        self.confidence: ConfidenceKind = confidence
        self.use_logprobs = use_logprobs
        self.needs = Needs(samples=samples, sample_logprobs=use_logprobs)

    def _logprobs(self, attempt: Attempt, k: int) -> list[float] | None:
        """Each of the first k samples' sequence logprob, or None unless all have tokens."""
        if not self.use_logprobs:
            return None
        sequences = [s.tokens for s in attempt.candidate.samples[:k]]
        if not all(sequences):
            return None
        return [sequence_logprob(tokens) for tokens in sequences if tokens]

    def compute(self, similarity: Matrix, attempt: Attempt) -> tuple[float, float, str]:
        k = similarity.shape[0] - 1
        if self.confidence == "entropy" and k < 2:
            raise EstimatorUnavailable(
                f"{self.name} normalises the entropy by log(samples) and got {k} sample; "
                "it needs at least 2 (did sampling fail?)"
            )
        labels = semantic_sets(similarity, self.threshold)
        logprobs = self._logprobs(attempt, k)
        probabilities = set_probabilities(labels[1:], logprobs, sets=max(labels) + 1)
        value = entropy(probabilities)
        if self.confidence == "cluster":
            confidence = float(probabilities[labels[0]])
        else:
            confidence = 1.0 - value / math.log(k)
        weighting = "sequence probability" if logprobs is not None else "count"
        detail = (
            f"{len(set(labels[1:]))} semantic sets among {k} samples, "
            f"{probabilities[labels[0]]:.3g} in the answer's, weighted by {weighting}"
        )
        return value, confidence, detail

    def __repr__(self) -> str:
        return (
            f"SemanticEntropy(similarity={self.similarity!r}, samples={self.samples}, "
            f"confidence={self.confidence!r})"
        )


__all__ = [
    "DEFAULT_CLUSTER_THRESHOLDS",
    "DEFAULT_EIGENVALUE_THRESHOLD",
    "Degree",
    "Eccentricity",
    "EigV",
    "NumSets",
    "SemanticEntropy",
    "SemanticEstimator",
    "degree_uncertainty",
    "degrees",
    "eccentricity",
    "eigv",
    "entropy",
    "laplacian_spectrum",
    "normalized_laplacian",
    "semantic_sets",
    "sequence_logprob",
    "set_probabilities",
]

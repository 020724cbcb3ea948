"""Confidence estimators.

The logprob family and the registry load with the package; the others (some import numpy)
load on first access.
"""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.estimators.logprob import (
    GreedyNLL,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    TokenLogprobEstimator,
)
from demur.estimators.registry import ESTIMATORS, build_estimator, parse_estimators
from demur.protocols import Attempt, Estimator, Needs

if TYPE_CHECKING:
    from demur.estimators.consistency import SampleAgreement
    from demur.estimators.ensemble import Ensemble, load_ensemble
    from demur.estimators.groundedness import STOPWORDS, Groundedness, is_refusal
    from demur.estimators.judge import LLMJudge
    from demur.estimators.ptrue import PTrue
    from demur.estimators.retrieval import RetrievalSimilarity
    from demur.estimators.sar import RelevanceWeightedNLL
    from demur.estimators.semantic import Degree, Eccentricity, EigV, NumSets, SemanticEntropy
    from demur.estimators.specs import (
        EstimatorSpec,
        build_from_spec,
        estimator_spec,
        estimator_specs,
    )
    from demur.estimators.verbal import VerbalizedConfidence

_LAZY = {
    "SampleAgreement": "demur.estimators.consistency",
    **dict.fromkeys(("Ensemble", "load_ensemble"), "demur.estimators.ensemble"),
    **dict.fromkeys(
        ("EstimatorSpec", "build_from_spec", "estimator_spec", "estimator_specs"),
        "demur.estimators.specs",
    ),
    **dict.fromkeys(("STOPWORDS", "Groundedness", "is_refusal"), "demur.estimators.groundedness"),
    "LLMJudge": "demur.estimators.judge",
    "PTrue": "demur.estimators.ptrue",
    "RetrievalSimilarity": "demur.estimators.retrieval",
    "RelevanceWeightedNLL": "demur.estimators.sar",
    **dict.fromkeys(
        ("Degree", "Eccentricity", "EigV", "NumSets", "SemanticEntropy"),
        "demur.estimators.semantic",
    ),
    "VerbalizedConfidence": "demur.estimators.verbal",
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "ESTIMATORS",
    "STOPWORDS",
    "Attempt",
    "Degree",
    "Eccentricity",
    "EigV",
    "Ensemble",
    "Estimator",
    "EstimatorSpec",
    "GreedyNLL",
    "Groundedness",
    "LLMJudge",
    "MeanTokenEntropy",
    "MeanTokenLogprob",
    "MinTokenProb",
    "Needs",
    "NumSets",
    "PTrue",
    "RelevanceWeightedNLL",
    "RetrievalSimilarity",
    "SampleAgreement",
    "SemanticEntropy",
    "TokenLogprobEstimator",
    "VerbalizedConfidence",
    "build_estimator",
    "build_from_spec",
    "estimator_spec",
    "estimator_specs",
    "is_refusal",
    "load_ensemble",
    "parse_estimators",
]

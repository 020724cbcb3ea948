"""Pre-generation routing: predict from the query alone which models will answer it well,
and start the ladder at the cheapest one likely to succeed.

    rows = load_routing_rows(["runs/weak", "runs/strong"])  # from demur.evaluation
    predictor = KnnPredictor("minilm-l6", k=25).fit(rows)
    predictor.save("predictor.json")
    gate = PreGenerationRouter.for_predictor(Predictor.load("predictor.json"), min_success=0.5)
    prediction = gate.start_for(query)      # Prediction: probabilities, start, reason
    apply_start(router, prediction).route(query)

The stage can only skip models; the started route still runs its post-generation check.
"""

from demur.pregen.base import Predictor, learners
from demur.pregen.crossfit import SkipPoint, cross_fit, fold_of, skip_curve
from demur.pregen.evaluate import ModelFigures, PredictorEvaluation, evaluate_predictor
from demur.pregen.features import CHEAP_FEATURES, Featurizer, QueryFeatures
from demur.pregen.knn import KnnPredictor
from demur.pregen.logistic import LogisticPredictor
from demur.pregen.rows import Outcome, RoutingRow, fingerprint
from demur.pregen.start import (
    Prediction,
    PreGenerationRouter,
    StartPredictor,
    apply_start,
)

__all__ = [
    "CHEAP_FEATURES",
    "Featurizer",
    "KnnPredictor",
    "LogisticPredictor",
    "ModelFigures",
    "Outcome",
    "PreGenerationRouter",
    "Prediction",
    "Predictor",
    "PredictorEvaluation",
    "QueryFeatures",
    "RoutingRow",
    "SkipPoint",
    "StartPredictor",
    "apply_start",
    "cross_fit",
    "evaluate_predictor",
    "fingerprint",
    "fold_of",
    "learners",
    "skip_curve",
]

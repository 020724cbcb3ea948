"""A predictor's figures on labelled rows: cross-fitted AUROC per model, the accuracy a ladder
gets when it skips its bottom model by the predictions, and where the router would start.

    report = evaluate_predictor(Predictor.load("predictor.json"), rows, folds=5)
    report.models[0].auroc_cross_fitted, report.curve, report.starts
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from demur.errors import ConfigError, DataError
from demur.pregen.base import Predictor
from demur.pregen.crossfit import SkipPoint, cross_fit, skip_curve
from demur.pregen.rows import RoutingRow, check_rows, fingerprint, row_models, success_labels
from demur.pregen.start import PreGenerationRouter

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModelFigures:
    """One model's labels and how well P(success) ranks them (None: undefined here)."""

    model: str
    rows: int
    success_rate: float
    auroc_cross_fitted: float | None
    auroc_saved: float | None


@dataclass(frozen=True)
class PredictorEvaluation:
    """What `evaluate_predictor` measured. `curve` and `random` are for the ladder's bottom
    model against its top one, on the rows with both; `starts` is the share of rows the
    PreGenerationRouter starts at each model, and `routed_accuracy` the accuracy of the
    model it starts at (no post-generation check), both from cross-fitted predictions."""

    rows: int
    folds: int
    in_sample: bool
    models: tuple[ModelFigures, ...]
    ladder: tuple[str, ...]
    curve: tuple[SkipPoint, ...]
    random: tuple[SkipPoint, ...]
    min_success: float
    starts: dict[str, float]
    routed_accuracy: float | None


def _auroc(p: FloatArray, y: FloatArray) -> float | None:
    import numpy as np

    from demur.calibration.metrics import auroc

    known = ~(np.isnan(p) | np.isnan(y))
    try:
        return float(auroc(p[known], y[known] > 0.5))
    except (DataError, ConfigError):
        return None


def evaluate_predictor(
    predictor: Predictor,
    rows: Sequence[RoutingRow],
    *,
    folds: int = 5,
    seed: int = 0,
    ladder: Sequence[str] | None = None,
    min_success: float = 0.5,
) -> PredictorEvaluation:
    """Cross-fit a copy of `predictor` (same learner and options) on `rows`, and apply the
    fitted `predictor` itself to them as well."""
    import numpy as np

    check_rows(rows, "evaluate_predictor")
    models = row_models(rows)
    gate = PreGenerationRouter.for_predictor(predictor, min_success=min_success, ladder=ladder)
    missing = [m for m in gate.ladder if m not in models]
    if missing:
        raise ConfigError(
            f"the ladder's {', '.join(missing)} has no outcome in these rows (models: "
            f"{', '.join(models)}); pass --ladder with models the rows have"
        )
    features = predictor.featurizer.features(
        [row.question for row in rows], [row.context for row in rows]
    )
    labels = {model: success_labels(rows, model) for model in models}
    oof = cross_fit(predictor, features, labels, folds=folds, seed=seed)
    saved = predictor.predict_features(features) if predictor.fitted else {}
    figures = []
    for model, y in labels.items():
        known = ~np.isnan(y)
        figures.append(
            ModelFigures(
                model=model,
                rows=int(known.sum()),
                success_rate=float(y[known].mean()),
                auroc_cross_fitted=_auroc(oof[model], y),
                auroc_saved=_auroc(saved[model], y) if model in saved else None,
            )
        )
    bottom, top = gate.ladder[0], gate.ladder[-1]
    curve = skip_curve(oof[bottom], labels[bottom], labels[top]) if len(gate.ladder) > 1 else []
    both = ~(np.isnan(labels[bottom]) | np.isnan(labels[top]))
    weak, strong = labels[bottom][both].mean(), labels[top][both].mean()
    random = [SkipPoint(p.share, float(weak + p.share * (strong - weak))) for p in curve]
    starts = [
        gate.decide({m: _value(oof[m][i]) for m in gate.ladder}).start for i in range(len(rows))
    ]
    complete = [i for i, row in enumerate(rows) if all(m in row.outcomes for m in gate.ladder)]
    routed = [rows[i].outcomes[starts[i]].success for i in complete]
    training = predictor.training
    return PredictorEvaluation(
        rows=len(rows),
        folds=folds,
        in_sample=training is not None and training.sha256 == fingerprint(rows),
        models=tuple(figures),
        ladder=gate.ladder,
        curve=tuple(curve),
        random=tuple(random),
        min_success=min_success,
        starts={m: starts.count(m) / len(starts) for m in gate.ladder},
        routed_accuracy=sum(routed) / len(routed) if routed else None,
    )


def _value(p: float) -> float | None:
    return None if p != p else float(p)  # NaN: no prediction


__all__ = ["ModelFigures", "PredictorEvaluation", "evaluate_predictor"]

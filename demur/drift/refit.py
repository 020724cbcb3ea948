"""Refitting the calibrator and conformal threshold on a route log's recent labelled answers.

The fitting is `demur calibrate`'s (`fit_bundle`): only the rows change. A threshold is only
as good as its rows are a fair sample of the traffic: labels from spot checks of accepted
answers alone, or from reviews of declined ones alone, cover only one side of the old
threshold. Label a random share of all routes for a refit that keeps its guarantee.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demur.errors import ConfigError
from demur.routelog.reader import RouteLogReader

if TYPE_CHECKING:
    from demur.calibration.bundle import CalibrationBundle


def scored_estimators(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The estimators that gave a confidence on any row, in the order first seen."""
    names: dict[str, None] = {}
    for row in rows:
        for name, score in row["scores"].items():
            if isinstance(score, dict) and score.get("confidence") is not None:
                names[name] = None
    return list(names)


def refit_from_log(
    path: str | Path,
    *,
    window: int,
    estimators: Sequence[str] | None = None,
    combine: str = "mean",
    method: str = "isotonic",
    alpha: float | None = 0.1,
    delta: float = 0.1,
    conformal_share: float = 0.5,
    model: str | None = None,
    sources: Collection[str] | None = None,
    seed: int = 0,
) -> tuple[CalibrationBundle, dict[str, Any]]:
    """A calibration bundle fitted on the `window` most recent labelled answers in the log.

    Returns the bundle and a report (rows used, their time span, and fit_bundle's counts).
    """
    from demur.calibration.bundle import fit_bundle

    if window < 1:
        raise ConfigError(f"window must be >= 1 labelled answers, got {window}")
    rows = RouteLogReader(path).labelled_rows(sources=sources, model=model, last=window)
    if not rows:
        which = f" of model '{model}'" if model is not None else ""
        raise ConfigError(
            f"route log {path} has no labelled answers{which} to refit on; record outcomes "
            "with RouteLog.record_outcome (human reviews, spot checks) first"
        )
    estimators = list(estimators) if estimators else scored_estimators(rows)
    if not estimators:
        raise ConfigError(
            f"no estimator scored the {len(rows)} labelled answers in {path}; the router must "
            "score its answers (estimators: [mean_logprob]) for a refit"
        )
    models = {row["model"] for row in rows}
    bundle, report = fit_bundle(
        rows,
        estimators,
        combine=combine,
        method=method,
        alpha=alpha,
        delta=delta,
        conformal_share=conformal_share,
        seed=seed,
        model=model or (models.pop() if len(models) == 1 else None),
        source=f"route log {path}: the {len(rows)} most recent labelled answers",
    )
    report.update(
        window_rows=len(rows),
        accepted_rows=sum(1 for row in rows if row["accepted"]),
        first_time=rows[0]["time"],
        last_time=rows[-1]["time"],
    )
    return bundle, report


__all__ = ["refit_from_log", "scored_estimators"]

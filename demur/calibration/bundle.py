"""What `demur calibrate` writes and a router config loads: a calibrator, a conformal
threshold, and the estimators and combination they were fitted for.

    {"kind": "demur.calibration", "version": 1, "estimators": ["mean_logprob", "min_prob"],
     "combine": "mean", "calibrator": {...}, "conformal": {...} | null, "source": "..."}

The calibrator maps the router's combined confidence to a probability of being correct; the
conformal threshold applies to that calibrated probability. Both are only valid for the same
estimators and combination, so loading checks them against the router's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demur.calibration.calibrators import CALIBRATORS, FittedCalibrator, calibrator_from_dict
from demur.calibration.conformal import (
    ConformalThreshold,
    NoValidThresholdError,
    examples_needed,
    smallest_alpha,
)
from demur.errors import ConfigError, unknown_name
from demur.scoring import ScoreCombiner
from demur.types import Score

KIND = "demur.calibration"


@dataclass(frozen=True)
class CalibrationBundle:
    estimators: tuple[str, ...]
    combine: str
    calibrator: FittedCalibrator
    conformal: ConformalThreshold | None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "estimators": list(self.estimators),
            "combine": self.combine,
            "calibrator": self.calibrator.to_dict(),
            "conformal": self.conformal.to_dict() if self.conformal is not None else None,
            "source": self.source,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CalibrationBundle:
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"calibration file {path} does not exist; write one with `demur calibrate`"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"calibration file {path} is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise ConfigError(
                f"{path} is not a demur calibration file (kind {KIND!r}); "
                "write one with `demur calibrate`"
            )
        what = f"calibration file {path}"
        conformal = document.get("conformal")
        return cls(
            estimators=tuple(document["estimators"]),
            combine=str(document["combine"]),
            calibrator=calibrator_from_dict(document["calibrator"], what),
            conformal=ConformalThreshold.from_dict(conformal) if conformal else None,
            source=document.get("source"),
        )

    def check_matches(self, estimators: Sequence[str], combine: str) -> None:
        """ConfigError unless the router scores with the estimators this was fitted for."""
        if tuple(estimators) != self.estimators or combine != self.combine:
            raise ConfigError(
                f"the calibration was fitted for estimators {list(self.estimators)} combined by "
                f"'{self.combine}', but the router uses {list(estimators)} combined by "
                f"'{combine}'; use the same estimators and combine, or recalibrate"
            )


def combined_confidences(
    rows: Sequence[dict[str, Any]], estimators: Sequence[str], combine: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """The router's combined confidence for each graded eval row, and the labels.

    Returns (confidence, correct, dropped): rows where no named estimator scored are dropped.
    """
    combiner = ScoreCombiner(combine)  # type: ignore[arg-type]
    confidence, correct, dropped = [], [], 0
    for row in rows:
        scores = [
            Score(estimator=name, confidence=row["scores"][name].get("confidence"))
            for name in estimators
            if name in row["scores"]
        ]
        value = combiner.combine(scores)
        if value is None or row.get("correct") is None:
            dropped += 1
            continue
        confidence.append(value)
        correct.append(bool(row["correct"]))
    return np.array(confidence, dtype=float), np.array(correct, dtype=bool), dropped


# How many times over the held-out rows are replicated to see what more such rows would give.
_SCALES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def _held_out_needed(
    calibrated: np.ndarray, correct: np.ndarray, alpha: float, delta: float
) -> int | None:
    """About how many held-out rows like these would give a threshold (None: no number would)."""
    least = examples_needed(alpha, delta)
    for scale in _SCALES:
        try:
            ConformalThreshold.fit(
                np.tile(calibrated, scale), np.tile(correct, scale), alpha, delta
            )
        except NoValidThresholdError:
            continue
        return max(least, scale * len(calibrated))
    return None


def _what_would_work(
    calibrated: np.ndarray,
    correct: np.ndarray,
    alpha: float,
    delta: float,
    conformal_share: float,
) -> str:
    """What would give a threshold when these rows do not: more rows, a looser alpha, or none."""
    options = []
    held_out = _held_out_needed(calibrated, correct, alpha, delta)
    if held_out is not None:
        rows = math.ceil(held_out / conformal_share)
        options.append(
            f"about {rows} graded rows like these ({held_out} held out for the threshold at "
            f"conformal_share={conformal_share:g}) would do at alpha={alpha:g}, delta={delta:g}"
        )
    else:
        options.append(
            f"more rows like these would not do at alpha={alpha:g}: even the most confident "
            "answers are wrong more often than that"
        )
    loosest_needed = smallest_alpha(calibrated, correct, delta)
    if loosest_needed is not None and loosest_needed > alpha:
        options.append(f"these rows support alpha={loosest_needed:g} or more")
    options.append(
        "the calibrator can be fitted alone (alpha=None; demur calibrate --no-conformal)"
    )
    return "What would work: " + "; ".join(options) + "."


def fit_bundle(
    rows: Sequence[dict[str, Any]],
    estimators: Sequence[str],
    *,
    combine: str = "mean",
    method: str = "isotonic",
    alpha: float | None = 0.1,
    delta: float = 0.1,
    conformal_share: float = 0.5,
    seed: int = 0,
    model: str | None = None,
    source: str | None = None,
) -> tuple[CalibrationBundle, dict[str, Any]]:
    """Fit a calibrator, then a conformal threshold on calibrated confidences of held-out rows.

    The rows are split at random: `1 - conformal_share` fit the calibrator, the rest calibrate
    the threshold, so the threshold's guarantee is not spoiled by reusing the calibrator's data.
    """
    if method not in CALIBRATORS:
        raise unknown_name("calibration method", method, CALIBRATORS)
    if not 0.0 < conformal_share < 1.0:
        raise ConfigError(f"conformal_share must be in (0, 1), got {conformal_share}")
    confidence, correct, dropped = combined_confidences(rows, estimators, combine)
    if len(confidence) == 0:
        raise ConfigError(
            f"no graded row has a score from {list(estimators)}; check the estimator names "
            "against the eval results"
        )
    order = np.random.default_rng(seed).permutation(len(confidence))
    split = round(len(order) * (1 - conformal_share)) if alpha is not None else len(order)
    fit_rows, conformal_rows = order[:split], order[split:]
    calibrator = CALIBRATORS[method]().fit(
        confidence[fit_rows], correct[fit_rows], estimators=estimators, model=model, data=source
    )
    threshold = None
    if alpha is not None:
        calibrated = calibrator.calibrate_many(confidence[conformal_rows])
        try:
            threshold = ConformalThreshold.fit(
                calibrated,
                correct[conformal_rows],
                alpha,
                delta,
                estimators=estimators,
                model=model,
                data=source,
            )
        except NoValidThresholdError as exc:
            advice = _what_would_work(
                calibrated, correct[conformal_rows], alpha, delta, conformal_share
            )
            raise NoValidThresholdError(f"{exc} {advice}", exc.needed) from None
    bundle = CalibrationBundle(
        estimators=tuple(estimators),
        combine=combine,
        calibrator=calibrator,
        conformal=threshold,
        source=source,
    )
    report = {
        "rows": len(confidence),
        "dropped_rows": dropped,
        "calibrator_rows": len(fit_rows),
        "conformal_rows": len(conformal_rows),
    }
    return bundle, report

"""Calibration: metrics, calibrators, conformal thresholds, and calibration files.

The modules import numpy (and scikit-learn when fitting), so they load on first access;
importing this package imports neither.
"""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.errors import NoValidThresholdError, UndefinedMetricError
from demur.protocols import Calibrator

if TYPE_CHECKING:
    from demur.calibration.bundle import CalibrationBundle, fit_bundle
    from demur.calibration.calibrators import (
        FittedCalibrator,
        HistogramBinningCalibrator,
        IsotonicCalibrator,
        PlattCalibrator,
        load_calibrator,
    )
    from demur.calibration.conformal import ConformalThreshold, error_upper_bound
    from demur.calibration.metrics import (
        ReliabilityBins,
        RiskCoverage,
        adaptive_ece,
        auprc,
        aurc,
        auroc,
        brier,
        ece,
        prr,
        reliability_bins,
        risk_coverage_curve,
        summarize,
    )

_LAZY = {
    **dict.fromkeys(("CalibrationBundle", "fit_bundle"), "demur.calibration.bundle"),
    **dict.fromkeys(
        (
            "FittedCalibrator",
            "HistogramBinningCalibrator",
            "IsotonicCalibrator",
            "PlattCalibrator",
            "load_calibrator",
        ),
        "demur.calibration.calibrators",
    ),
    **dict.fromkeys(("ConformalThreshold", "error_upper_bound"), "demur.calibration.conformal"),
    **dict.fromkeys(
        (
            "ReliabilityBins",
            "RiskCoverage",
            "adaptive_ece",
            "auprc",
            "auroc",
            "aurc",
            "brier",
            "ece",
            "prr",
            "reliability_bins",
            "risk_coverage_curve",
            "summarize",
        ),
        "demur.calibration.metrics",
    ),
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "CalibrationBundle",
    "Calibrator",
    "ConformalThreshold",
    "FittedCalibrator",
    "HistogramBinningCalibrator",
    "IsotonicCalibrator",
    "NoValidThresholdError",
    "PlattCalibrator",
    "ReliabilityBins",
    "RiskCoverage",
    "UndefinedMetricError",
    "adaptive_ece",
    "auprc",
    "aurc",
    "auroc",
    "brier",
    "ece",
    "error_upper_bound",
    "fit_bundle",
    "load_calibrator",
    "prr",
    "reliability_bins",
    "risk_coverage_curve",
    "summarize",
]

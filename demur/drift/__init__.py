"""Drift: watch the accepted answers' error, acceptance and calibration as outcomes arrive,
alarm when the error exceeds alpha with confidence, and refit on the recent window."""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.drift.monitor import CalibrationBin, DriftAlarm, DriftMonitor, DriftState
from demur.drift.replay import AlarmPoint, DriftReport, replay_log

if TYPE_CHECKING:
    from demur.drift.refit import refit_from_log

# The refit loads calibration, which imports numpy.
__getattr__, __dir__ = _lazy_exports(__name__, globals(), {"refit_from_log": "demur.drift.refit"})

__all__ = [
    "AlarmPoint",
    "CalibrationBin",
    "DriftAlarm",
    "DriftMonitor",
    "DriftReport",
    "DriftState",
    "refit_from_log",
    "replay_log",
]

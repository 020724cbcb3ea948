"""The calibrator protocol: turns a combined confidence into a probability of being correct."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Calibrator(Protocol):
    """Maps a raw confidence in [0, 1] to a calibrated probability in [0, 1]."""

    def calibrate(self, confidence: float) -> float: ...

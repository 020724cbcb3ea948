"""The calibrator contract, re-exported from `demur.protocols` (where it is defined)."""

from demur.protocols import Calibrator

__all__ = ["Calibrator"]

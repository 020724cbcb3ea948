"""The estimator contract, re-exported from `demur.protocols` (where it is defined)."""

from demur.bases import EstimatorBase
from demur.protocols import NOTHING, Attempt, Estimator, ModelCaller, Needs

__all__ = ["NOTHING", "Attempt", "Estimator", "EstimatorBase", "ModelCaller", "Needs"]

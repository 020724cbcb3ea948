"""The model contract, re-exported from `demur.protocols` (where it is defined)."""

from demur.bases import ModelBase
from demur.protocols import FREE, Model, Price

__all__ = ["FREE", "Model", "ModelBase", "Price"]

"""Calibrators fitted on labelled answers: Platt scaling, isotonic regression, histogram binning.

Fitting uses scikit-learn (`pip install 'demur[eval]'`), imported only inside `fit`; applying a
fitted calibrator needs numpy alone, so a saved one runs wherever demur runs. Each saves to JSON
with what it was fitted on (estimators, model, data, when, how many examples) and its ECE and
Brier score on the fitting data before and after (the file format is `demur.calibration.files`).

    calibrator = IsotonicCalibrator().fit(confidence, correct, estimators=["mean_logprob"])
    calibrator.save("calibrator.json")
    router = Router(..., calibrator=load_calibrator("calibrator.json"))
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from demur.calibration.files import (
    FORMAT_VERSION,
    FitMetadata,
    PathLike,
    check_document,
    parse_json,
    read_json,
    utc_now,
    validated,
    write_json,
)
from demur.calibration.metrics import (
    BinStrategy,
    BoolArray,
    FloatArray,
    brier,
    check_confidence,
    check_inputs,
    ece,
    reliability_bins,
)
from demur.errors import ConfigError, MissingDependencyError, unknown_name

MIN_EXAMPLES = 10
# Confidences are clipped to [EPS, 1 - EPS] before taking logits, so 0 and 1 stay finite.
EPS = 1e-9


# --- shared: data checks and logits ---------------------------------------------------------


def check_training_data(
    who: str, confidence: npt.ArrayLike, correct: npt.ArrayLike
) -> tuple[FloatArray, BoolArray]:
    """Validated arrays with enough examples of both kinds to fit on, or a ConfigError."""
    c, y = check_inputs(confidence, correct)
    if len(c) < MIN_EXAMPLES:
        raise ConfigError(
            f"{who} needs at least {MIN_EXAMPLES} labelled examples to fit, got {len(c)}; "
            "label more answers (a few hundred give a stable fit)"
        )
    n_right = int(y.sum())
    if n_right in (0, len(y)):
        which = "correct" if n_right else "wrong"
        other = "wrong" if n_right else "correct"
        raise ConfigError(
            f"{who} cannot fit: all {len(y)} examples are {which}. It learns how often answers "
            f"at each confidence are right, so it needs some {other} answers too; label more."
        )
    return c, y


def logit(p: FloatArray) -> FloatArray:
    """log(p / (1 - p)) with p clipped to [EPS, 1 - EPS]."""
    q = np.clip(p, EPS, 1.0 - EPS)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


def sigmoid(z: FloatArray) -> FloatArray:
    """1 / (1 + exp(-z)), without overflow warnings for large |z|."""
    out: FloatArray = np.exp(-np.logaddexp(0.0, -z))
    return out


# --- the calibrators --------------------------------------------------------------------------


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    version: int
    options: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any]
    metadata: FitMetadata | None = None


class FittedCalibrator(ABC):
    """A calibrator fitted on labelled answers and applied with numpy.

    Satisfies `demur.calibration.base.Calibrator`: `calibrate(confidence) -> probability`.
    """

    kind: ClassVar[str]
    metadata: FitMetadata | None = None

    # --- what each calibrator defines ---

    @abstractmethod
    def _fit(self, c: FloatArray, y: BoolArray) -> None:
        """Fit on validated data and store the parameters that `_apply` uses."""

    @abstractmethod
    def _apply(self, x: FloatArray) -> FloatArray:
        """Map validated confidences (any shape) to probabilities, with numpy alone."""

    @property
    @abstractmethod
    def fitted(self) -> bool:
        """True once fitted or loaded."""

    @abstractmethod
    def _options(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The fitted parameters, as JSON values."""

    @abstractmethod
    def _set_params(self, params: Mapping[str, Any], what: str) -> None:
        """Restore the fitted parameters written by `_params`."""

    # --- shared behaviour ---

    def fit(
        self,
        confidence: npt.ArrayLike,
        correct: npt.ArrayLike,
        *,
        estimators: Sequence[str] = (),
        model: str | None = None,
        data: str | None = None,
    ) -> Self:
        """Fit on labelled answers; `estimators`, `model`, `data` describe them in the metadata."""
        c, y = check_training_data(f"{type(self).__name__}.fit", confidence, correct)
        self._fit(c, y)
        after = np.clip(self._apply(c), 0.0, 1.0)
        self.metadata = FitMetadata(
            estimators=tuple(estimators),
            model=model,
            data=data,
            fitted_at=utc_now(),
            n=len(c),
            metrics={
                "before": {"ece": ece(c, y), "brier": brier(c, y)},
                "after": {"ece": ece(after, y), "brier": brier(after, y)},
            },
        )
        return self

    def _require_fitted(self) -> None:
        if not self.fitted:
            name = type(self).__name__
            raise ConfigError(
                f"this {name} is not fitted; call .fit(confidence, correct) or "
                f"{name}.load(path) first"
            )

    def calibrate_many(self, confidence: npt.ArrayLike) -> FloatArray:
        """Calibrate an array of confidences in [0, 1] (any shape) with numpy."""
        self._require_fitted()
        out: FloatArray = np.clip(self._apply(check_confidence(confidence)), 0.0, 1.0)
        return out

    def calibrate(self, confidence: float) -> float:
        """Calibrate one confidence in [0, 1]."""
        return float(self.calibrate_many(np.array([confidence], dtype=np.float64))[0])

    def to_dict(self) -> dict[str, Any]:
        self._require_fitted()
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "options": self._options(),
            "params": self._params(),
            "metadata": self.metadata.model_dump(mode="json") if self.metadata else None,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], what: str = "the calibrator") -> Self:
        check_document(document, cls.kind, what)
        parsed = validated(_Document, document, what)
        try:
            calibrator = cls(**parsed.options)
        except TypeError as exc:
            raise ConfigError(f"{what} has bad options {parsed.options}: {exc}") from None
        calibrator._set_params(parsed.params, what)
        calibrator.metadata = parsed.metadata
        return calibrator

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(parse_json(text, "the calibrator JSON"))

    def save(self, path: PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: PathLike) -> Self:
        return cls.from_dict(read_json(path, "calibrator"), f"the calibrator file '{path}'")


def _needs_sklearn(who: str) -> MissingDependencyError:
    return MissingDependencyError("scikit-learn", "eval", f"{who}.fit")


class _PlattParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: float
    b: float


class PlattCalibrator(FittedCalibrator):
    """Platt scaling: p = sigmoid(a * logit(confidence) + b), a logistic fit on the logit.

    Two parameters, so it needs little data and cannot overfit much; it can only stretch and
    shift the confidences, not fix a miscalibration that changes direction. `C` is the inverse
    L2 strength of scikit-learn's LogisticRegression.
    """

    kind = "platt"

    def __init__(self, C: float = 1.0) -> None:
        if not C > 0:
            raise ConfigError(f"PlattCalibrator(C={C}): C must be > 0, e.g. 1.0")
        self.C = float(C)
        self.a: float | None = None
        self.b: float | None = None

    @property
    def fitted(self) -> bool:
        return self.a is not None and self.b is not None

    def _fit(self, c: FloatArray, y: BoolArray) -> None:
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise _needs_sklearn("PlattCalibrator") from None
        model = LogisticRegression(C=self.C).fit(logit(c)[:, None], y)
        self.a = float(model.coef_[0, 0])
        self.b = float(model.intercept_[0])

    def _apply(self, x: FloatArray) -> FloatArray:
        assert self.a is not None and self.b is not None
        return sigmoid(self.a * logit(x) + self.b)

    def _options(self) -> dict[str, Any]:
        return {"C": self.C}

    def _params(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}

    def _set_params(self, params: Mapping[str, Any], what: str) -> None:
        parsed = validated(_PlattParams, params, f"{what} params")
        self.a, self.b = parsed.a, parsed.b

    def __repr__(self) -> str:
        return f"PlattCalibrator(a={self.a!r}, b={self.b!r})"


class _BreakpointParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: list[float] = Field(min_length=1)
    y: list[float] = Field(min_length=1)


class IsotonicCalibrator(FittedCalibrator):
    """Isotonic regression: the best non-decreasing map from confidence to accuracy.

    Stores the fitted breakpoints and applies them with np.interp (linear between breakpoints,
    flat beyond the ends), exactly as scikit-learn's IsotonicRegression predicts. Flexible, so
    it wants a few hundred examples; with fewer, prefer PlattCalibrator.
    """

    kind = "isotonic"

    def __init__(self) -> None:
        self.x: FloatArray | None = None
        self.y: FloatArray | None = None

    @property
    def fitted(self) -> bool:
        return self.x is not None and self.y is not None

    def _fit(self, c: FloatArray, y: BoolArray) -> None:
        try:
            from sklearn.isotonic import IsotonicRegression
        except ImportError:
            raise _needs_sklearn("IsotonicCalibrator") from None
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(c, y.astype(np.float64))
        self.x = np.asarray(model.X_thresholds_, dtype=np.float64)
        self.y = np.asarray(model.y_thresholds_, dtype=np.float64)

    def _apply(self, x: FloatArray) -> FloatArray:
        assert self.x is not None and self.y is not None
        out: FloatArray = np.interp(x, self.x, self.y)
        return out

    def _options(self) -> dict[str, Any]:
        return {}

    def _params(self) -> dict[str, Any]:
        assert self.x is not None and self.y is not None
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    def _set_params(self, params: Mapping[str, Any], what: str) -> None:
        parsed = validated(_BreakpointParams, params, f"{what} params")
        x = np.asarray(parsed.x, dtype=np.float64)
        if len(parsed.x) != len(parsed.y) or np.any(np.diff(x) < 0):
            raise ConfigError(
                f"{what} params are malformed: x and y must have the same length and x must "
                "be non-decreasing; refit and save the calibrator"
            )
        self.x, self.y = x, np.asarray(parsed.y, dtype=np.float64)

    def __repr__(self) -> str:
        points = "unfitted" if self.x is None else f"{len(self.x)} breakpoints"
        return f"IsotonicCalibrator({points})"


class _HistogramParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edges: list[float] = Field(min_length=2)
    values: list[float] = Field(min_length=1)


class HistogramBinningCalibrator(FittedCalibrator):
    """Histogram binning: each confidence maps to the accuracy of its bin on the fitting data.

    Bins are equal-mass ("quantile", the default, no empty bins) or equal-width ("uniform");
    an empty uniform bin keeps its midpoint, since the data say nothing about it. Needs only
    numpy, to fit as well as to apply.
    """

    kind = "histogram"

    def __init__(self, n_bins: int = 10, strategy: BinStrategy = "quantile") -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ConfigError(f"HistogramBinningCalibrator(n_bins={n_bins!r}): use e.g. 10")
        if strategy not in ("uniform", "quantile"):
            raise ConfigError(
                f"HistogramBinningCalibrator(strategy={strategy!r}): use 'quantile' or 'uniform'"
            )
        self.n_bins = n_bins
        self.strategy: BinStrategy = strategy
        self.edges: FloatArray | None = None
        self.values: FloatArray | None = None

    @property
    def fitted(self) -> bool:
        return self.edges is not None and self.values is not None

    def _fit(self, c: FloatArray, y: BoolArray) -> None:
        bins = reliability_bins(c, y, self.n_bins, self.strategy)
        self.edges = np.r_[bins.lower, bins.upper[-1]]
        midpoints = (bins.lower + bins.upper) / 2
        self.values = np.where(bins.count > 0, bins.accuracy, midpoints)

    def _apply(self, x: FloatArray) -> FloatArray:
        assert self.edges is not None and self.values is not None
        out: FloatArray = self.values[np.searchsorted(self.edges[1:-1], x, side="right")]
        return out

    def _options(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins, "strategy": self.strategy}

    def _params(self) -> dict[str, Any]:
        assert self.edges is not None and self.values is not None
        return {"edges": self.edges.tolist(), "values": self.values.tolist()}

    def _set_params(self, params: Mapping[str, Any], what: str) -> None:
        parsed = validated(_HistogramParams, params, f"{what} params")
        edges = np.asarray(parsed.edges, dtype=np.float64)
        if len(parsed.values) != len(parsed.edges) - 1 or np.any(np.diff(edges) <= 0):
            raise ConfigError(
                f"{what} params are malformed: edges must increase and there must be one "
                "value per bin (len(edges) - 1); refit and save the calibrator"
            )
        self.edges, self.values = edges, np.asarray(parsed.values, dtype=np.float64)

    def __repr__(self) -> str:
        return f"HistogramBinningCalibrator(n_bins={self.n_bins}, strategy={self.strategy!r})"


CALIBRATORS: dict[str, type[FittedCalibrator]] = {
    cls.kind: cls for cls in (PlattCalibrator, IsotonicCalibrator, HistogramBinningCalibrator)
}


def calibrator_from_dict(
    document: Mapping[str, Any], what: str = "the calibrator"
) -> FittedCalibrator:
    """Rebuild whichever calibrator `document["kind"]` names."""
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in CALIBRATORS:
        if isinstance(kind, str):
            raise unknown_name("calibrator kind", kind, CALIBRATORS)
        raise ConfigError(
            f"{what} has no 'kind' field naming its calibrator; "
            f"expected one of: {', '.join(sorted(CALIBRATORS))}"
        )
    return CALIBRATORS[kind].from_dict(document, what)


def calibrator_from_json(text: str | bytes) -> FittedCalibrator:
    """Rebuild a calibrator of any kind from its JSON."""
    return calibrator_from_dict(parse_json(text, "the calibrator JSON"))


def load_calibrator(path: PathLike) -> FittedCalibrator:
    """Load a calibrator of any kind saved with `.save(path)`; the file's "kind" picks the class."""
    return calibrator_from_dict(read_json(path, "calibrator"), f"the calibrator file '{path}'")

"""An estimator that combines other estimators with weights learnt from labelled answers.

    ensemble = Ensemble.fit(rows, correct)        # members built by name from the rows' keys
    ensemble = Ensemble([MeanTokenLogprob(), MeanTokenEntropy(top_k=3)]).fit(rows, correct)
    ensemble.save("ensemble.json")
    router = Router(..., estimators=[load_ensemble("ensemble.json")])

The combined confidence is sigmoid(intercept + sum_i w_i * logit(c_i)): a logistic regression
on the logits of the members' confidences, fitted with scikit-learn (`pip install
'demur[eval]'`, imported only inside `fit`) and applied with numpy. A member that is
unavailable on an answer (or fails, or times out) is replaced by its imputation value, the
mean of its logit on the fitting data; when every member is unavailable the ensemble is too.

Members named rather than given are built through the estimator registry with their saved
options. One the registry cannot build (not registered, or it needs an object such as a judge
model) is kept by name: the ensemble can still combine stored scores, and it explains how to
pass the member in when asked to score an answer itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from demur.bases import EstimatorBase
from demur.calibration.calibrators import logit, sigmoid
from demur.calibration.files import (
    FitMetadata,
    PathLike,
    check_document,
    parse_json,
    read_json,
    utc_now,
    validated,
    write_json,
)
from demur.calibration.metrics import FloatArray
from demur.errors import (
    ConfigError,
    EstimatorError,
    EstimatorUnavailable,
)
from demur.estimators._ensemble_fit import (
    EnsembleDocument,
    FitMethod,
    Row,
    check_labels,
    fit_metrics,
    fit_weights,
    fitting_rows,
    member_options,
)
from demur.protocols import NOTHING, Attempt, Estimator, Needs, check_component
from demur.scoring import run_estimator, score_in_process
from demur.types import Score

KIND = "ensemble"
FORMAT_VERSION = 1


def _per_member(
    what: str, values: Sequence[float] | Mapping[str, float], names: Sequence[str]
) -> list[float]:
    """Values in member order, from a sequence in that order or a mapping by member name."""
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        extra = [k for k in values if k not in names]
        if missing or extra:
            raise ConfigError(
                f"Ensemble {what} must name each member once: "
                + (f"missing {', '.join(missing)}; " if missing else "")
                + (f"unknown {', '.join(extra)}; " if extra else "")
                + f"members are {', '.join(names)}"
            )
        out = [values[n] for n in names]
    else:
        out = list(values)
        if len(out) != len(names):
            raise ConfigError(
                f"Ensemble got {len(out)} {what} for {len(names)} members "
                f"({', '.join(names)}); give one per member, in order, or a {{name: value}} dict"
            )
    bad = [v for v in out if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"Ensemble {what} must be finite numbers, got {out}")
    return [float(v) for v in out]


class _Unbuilt(EstimatorBase):
    """A member known only by name: its stored scores can be combined, not computed."""

    needs = NOTHING

    def __init__(self, name: str, options: Mapping[str, Any], reason: str) -> None:
        self.name = name
        self.options = dict(options)
        self.reason = reason

    async def aestimate(self, attempt: Attempt) -> Score:
        raise ConfigError(f"ensemble member '{self.name}' was never built: {self.reason}")

    def __repr__(self) -> str:
        return f"<{self.name}: by name only>"


def _resolve(member: Estimator | str, options: Mapping[str, Any] | None = None) -> Estimator:
    """An estimator object for a member given as one or by registry name."""
    if not isinstance(member, str):
        check_component("ensemble member", member, Estimator, "EstimatorBase")
        return member
    from demur.estimators.registry import build_estimator

    try:
        return build_estimator(member, options)
    except ConfigError as exc:
        return _Unbuilt(member, options or {}, str(exc))


def _options_of(member: Estimator) -> dict[str, Any]:
    return member.options if isinstance(member, _Unbuilt) else member_options(member)


class Ensemble(EstimatorBase):
    """Combines member estimators' confidences with weights fitted on labelled answers.

    `members` are estimators or registry names. `weights` and `imputation` are given per
    member, in order or as {member name: value}; leave `weights` out and call `fit` to learn
    them (`Ensemble.fit(rows, correct)` also builds the members, by name, from the rows).
    `imputation` is the confidence used for a member that produced none (default 0.5, whose
    logit 0 adds nothing). `needs` is the merge of the members' needs.

    When every member computes in-process, so does the ensemble (`in_process`), and the
    router calls `estimate` directly; otherwise the router awaits `aestimate`, which runs the
    members concurrently, each under `member_timeout_s`.
    """

    def __init__(
        self,
        members: Sequence[Estimator | str],
        weights: Sequence[float] | Mapping[str, float] | None = None,
        intercept: float = 0.0,
        imputation: Sequence[float] | Mapping[str, float] | None = None,
        *,
        name: str = "ensemble",
        member_timeout_s: float | None = None,
        C: float = 1.0,
        metadata: FitMetadata | None = None,
    ) -> None:
        built = [_resolve(m) for m in members]
        if not built:
            raise ConfigError("an Ensemble needs at least one member estimator")
        names = [m.name for m in built]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"Ensemble members must have distinct names; repeated: {', '.join(repeated)}"
            )
        if member_timeout_s is not None and not member_timeout_s > 0:
            raise ConfigError(f"member_timeout_s must be > 0 seconds, got {member_timeout_s}")
        if not C > 0:
            raise ConfigError(f"Ensemble(C={C}): C must be > 0, e.g. 1.0")
        self.members: tuple[Estimator, ...] = tuple(built)
        self.names = tuple(names)
        self.unbuilt = {m.name: m.reason for m in built if isinstance(m, _Unbuilt)}
        self.name = name
        self.member_timeout_s = member_timeout_s
        self.C = float(C)
        self.metadata = metadata
        self.needs: Needs = functools.reduce(Needs.merge, (m.needs for m in built), NOTHING)
        self.weights: FloatArray | None = None
        self.intercept = float(intercept)
        self.imputation = np.full(len(built), 0.5)
        if weights is not None:
            self.weights = np.array(_per_member("weights", weights, names))
        if imputation is not None:
            values = _per_member("imputation", imputation, names)
            if not all(0.0 <= v <= 1.0 for v in values):
                raise ConfigError(f"Ensemble imputation values are confidences in [0, 1]: {values}")
            self.imputation = np.array(values)
        self.in_process = all(m.in_process for m in built)

    # --- combining ----------------------------------------------------------------------------

    def _require_ready(self) -> None:
        """ConfigError unless the ensemble can score answers itself: fitted, members built."""
        self._require_fitted()
        if self.unbuilt:
            why = "; ".join(f"{n}: {r}" for n, r in self.unbuilt.items())
            raise ConfigError(
                f"ensemble '{self.name}' cannot score answers: member(s) "
                f"{', '.join(self.unbuilt)} are known by name only ({why}). Pass them in: "
                "Ensemble.load(path, members=[...]) or Ensemble([...], weights=...)"
            )

    def _require_fitted(self) -> FloatArray:
        if self.weights is None:
            raise ConfigError(
                f"Ensemble '{self.name}' has no weights: call .fit(rows, correct), pass "
                "weights=..., or load a fitted one with Ensemble.load(path)"
            )
        return self.weights

    def _matrix(self, rows: Sequence[Row]) -> FloatArray:
        """Rows of member confidences as a matrix, NaN where a member gave none."""
        matrix = np.full((len(rows), len(self.names)), np.nan)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.names):
                value = row.get(name)
                if value is not None:
                    matrix[i, j] = value
        outside = (matrix < 0.0) | (matrix > 1.0)  # False for NaN
        if outside.any():
            at = ", ".join(
                f"row {i} {self.names[j]}={float(matrix[i, j])!r}"
                for i, j in np.argwhere(outside)[:5]
            )
            raise ConfigError(
                f"member confidences must lie in [0, 1] (None or NaN when missing); got {at}"
            )
        return matrix

    def _linear(self, matrix: FloatArray) -> FloatArray:
        filled = np.where(np.isnan(matrix), self.imputation, matrix)
        z: FloatArray = self.intercept + logit(filled) @ self._require_fitted()
        return z

    def combine(self, confidences: Row) -> float:
        """The combined confidence of one answer, from {member name: confidence or None}."""
        matrix = self._matrix([confidences])
        if np.isnan(matrix).all():
            raise EstimatorUnavailable(
                f"every member of {self.name} ({', '.join(self.names)}) is missing"
            )
        return float(sigmoid(self._linear(matrix))[0])

    def combine_many(self, rows: Sequence[Row]) -> FloatArray:
        """Combined confidences for many answers; NaN for a row where every member is missing."""
        matrix = self._matrix(rows)
        out = sigmoid(self._linear(matrix))
        out[np.isnan(matrix).all(axis=1)] = np.nan
        return out

    def _score(self, results: Sequence[float | str]) -> Score:
        """The ensemble's Score from each member's confidence or the reason it has none."""
        confidences = {
            n: r for n, r in zip(self.names, results, strict=True) if isinstance(r, float)
        }
        reasons = {n: r for n, r in zip(self.names, results, strict=True) if isinstance(r, str)}
        if not confidences:
            listed = "; ".join(f"{n}: {r}" for n, r in reasons.items())
            if all(r.startswith("unavailable") for r in reasons.values()):
                raise EstimatorUnavailable(f"no member of {self.name} produced a score ({listed})")
            raise EstimatorError(f"no member of {self.name} produced a score ({listed})")
        z = float(self._linear(self._matrix([confidences]))[0])
        detail = None
        if reasons:
            detail = "imputed " + "; ".join(f"{n} ({r})" for n, r in reasons.items())
        return Score(
            estimator=self.name,
            value=z,
            confidence=float(sigmoid(np.array([z]))[0]),
            detail=detail,
        )

    # --- as an estimator ----------------------------------------------------------------------

    @staticmethod
    def _outcome(score: Score) -> float | str:
        """A member's confidence, or why it has none."""
        if score.status == "timeout":
            return "timeout"
        if score.confidence is None:
            return f"{score.status}: {score.detail or 'no confidence'}"
        return float(score.confidence)

    def estimate(self, attempt: Attempt) -> Score:
        """Score in-process; only when every member computes in-process (`in_process`)."""
        if not self.in_process:
            return super().estimate(attempt)
        self._require_ready()
        return self._score([self._outcome(score_in_process(m, attempt)) for m in self.members])

    async def aestimate(self, attempt: Attempt) -> Score:
        """Run the members concurrently, then combine; missing members are imputed."""
        self._require_ready()
        scores = await asyncio.gather(
            *(run_estimator(m, attempt, self.member_timeout_s) for m in self.members)
        )
        return self._score([self._outcome(score) for score in scores])

    # --- fitting ------------------------------------------------------------------------------

    fit = FitMethod()

    def _fit(
        self,
        rows: Sequence[Row],
        correct: npt.ArrayLike,
        *,
        model: str | None = None,
        data: str | None = None,
    ) -> Self:
        """Learn weights, intercept and imputation from labelled answers.

        `rows[i]` maps member names to answer i's confidences (None or NaN when a member gave
        none; other keys are ignored); `correct[i]` says whether answer i was right. Rows in
        which every member is missing are left out, as the ensemble gives no score there.
        """
        labels = check_labels(rows, correct)
        matrix, y = fitting_rows(self._matrix(rows), labels, self.names, rows)
        self.imputation, self.weights, self.intercept = fit_weights(matrix, y, self.C)
        combined = sigmoid(self._linear(matrix))
        self.metadata = FitMetadata(
            estimators=self.names,
            model=model,
            data=data,
            fitted_at=utc_now(),
            n=len(y),
            metrics=fit_metrics(self.name, self.names, matrix, y, combined),
        )
        return self

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        weights = self._require_fitted()
        return {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "name": self.name,
            "members": [{"name": m.name, "options": _options_of(m)} for m in self.members],
            "weights": weights.tolist(),
            "intercept": self.intercept,
            "imputation": self.imputation.tolist(),
            "options": {"member_timeout_s": self.member_timeout_s, "C": self.C},
            "metadata": self.metadata.model_dump(mode="json") if self.metadata else None,
        }

    @classmethod
    def from_dict(
        cls,
        document: Mapping[str, Any],
        members: Sequence[Estimator] | None = None,
        what: str = "the ensemble",
    ) -> Self:
        """Rebuild a saved ensemble. Members are built through the estimator registry with
        their saved options, or taken from `members` (matched by name) when given."""
        check_document(document, KIND, what)
        parsed = validated(EnsembleDocument, document, what)
        given = {m.name: m for m in members or ()}
        unknown = sorted(set(given) - {spec.name for spec in parsed.members})
        if unknown:
            raise ConfigError(
                f"{what} has no member(s) {', '.join(unknown)}; its members are "
                f"{', '.join(spec.name for spec in parsed.members)}"
            )
        built = [
            given.get(spec.name) or _resolve(spec.name, spec.options) for spec in parsed.members
        ]
        for spec, member in zip(parsed.members, built, strict=True):
            if member.name != spec.name:
                raise ConfigError(
                    f"{what}: member '{spec.name}' was rebuilt as '{member.name}'; "
                    "pass the right estimator in members=[...]"
                )
        options = parsed.options
        return cls(
            built,
            weights=parsed.weights,
            intercept=parsed.intercept,
            imputation=parsed.imputation,
            name=parsed.name,
            member_timeout_s=options.get("member_timeout_s"),
            C=options.get("C", 1.0),
            metadata=parsed.metadata,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, members: Sequence[Estimator] | None = None) -> Self:
        return cls.from_dict(parse_json(text, "the ensemble JSON"), members)

    def save(self, path: PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: PathLike, members: Sequence[Estimator] | None = None) -> Self:
        what = f"the ensemble file '{path}'"
        return cls.from_dict(read_json(path, "ensemble"), members, what)

    def __repr__(self) -> str:
        weights = None if self.weights is None else [round(w, 4) for w in self.weights.tolist()]
        return f"Ensemble({list(self.members)!r}, weights={weights}, name={self.name!r})"


def load_ensemble(path: str) -> Ensemble:
    """Load a saved Ensemble with members built by name (for configs: {name: ensemble, path})."""
    return Ensemble.load(path)

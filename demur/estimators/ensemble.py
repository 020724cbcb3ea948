"""An estimator that combines other estimators with weights learnt from labelled answers.

    ensemble = Ensemble([MeanTokenLogprob(), NumSets(similarity="jaccard")]).fit(rows, correct)
    ensemble.save("ensemble.json")
    router = Router(..., estimators=[load_ensemble("ensemble.json")])

The combined confidence is sigmoid(intercept + sum_i w_i * logit(c_i)), each c_i clipped to
[clip, 1 - clip] first: a logistic regression on the members' logits, fitted with scikit-learn
(`pip install 'demur[eval]'`, imported only while fitting) and applied with numpy. Fitting
prunes redundant members, chooses the L2 strength by inner cross-validation, and falls back to
the best member alone when the combination does not beat it (`demur.estimators._ensemble_fit`
says how). A member that is unavailable on an answer (or fails, or times out) is replaced by
its imputation value, the mean of its logit on the fitting data; when every member is
unavailable the ensemble is too.

A saved ensemble keeps each member's registry kind and options, so loading rebuilds it as it
was (an embedder by its built-in name). A member that cannot be rebuilt (of no registered
class, or needing an object such as a judge model) is kept by name: the ensemble still
combines stored scores, and explains how to pass the member in when asked to score an answer.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from demur.bases import EstimatorBase
from demur.calibration.calibrators import sigmoid
from demur.calibration.files import (
    FitMetadata,
    PathLike,
    parse_json,
    read_json,
    utc_now,
    write_json,
)
from demur.calibration.metrics import FloatArray
from demur.errors import ConfigError, EstimatorError, EstimatorUnavailable, check_range
from demur.estimators._ensemble_file import (
    FORMAT_VERSION,
    KIND,
    TrainingData,
    Unbuilt,
    build_member,
    fingerprint,
    from_row_key,
    member_spec,
    parse_document,
    per_member,
    resolve,
)
from demur.estimators._ensemble_fit import (
    CLIP,
    DEFAULT_FOLDS,
    FitMethod,
    Row,
    Selection,
    check_labels,
    clipped_logit,
    fit_combination,
    fit_metrics,
    fitting_rows,
)
from demur.protocols import NOTHING, Attempt, Estimator, Needs
from demur.scoring import run_estimator, score_in_process
from demur.types import Score


class Ensemble(EstimatorBase):
    """Combines member estimators' confidences with weights fitted on labelled answers.

    `members` are estimators, or registry names (built with default options). `weights` and
    `imputation` are given per member, in order or as {member name: value}; leave `weights`
    out and call `fit` to learn them (`Ensemble.fit(rows, correct)` also names the members
    from the rows' keys). `imputation` is the confidence used for a member that produced none
    (default 0.5, whose logit 0 adds nothing). `C` is the inverse L2 strength of the fit, None
    to choose it by cross-validation; `clip` keeps confidences within [clip, 1 - clip] before
    the logit. `needs` is the merge of the members' needs.

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
        C: float | None = None,
        clip: float = CLIP,
        metadata: FitMetadata | None = None,
        selection: Selection | None = None,
        training: TrainingData | None = None,
    ) -> None:
        if member_timeout_s is not None and not member_timeout_s > 0:
            raise ConfigError(f"member_timeout_s must be > 0 seconds, got {member_timeout_s}")
        if C is not None and not C > 0:
            raise ConfigError(f"Ensemble(C={C}): C must be > 0, e.g. 1.0, or None to choose it")
        self.clip = check_range("Ensemble", "clip", clip, 0.0, 0.5, lo_open=True, hi_open=True)
        self._set_members([resolve(m) for m in members])
        self.name = name
        self.member_timeout_s = member_timeout_s
        self.C = None if C is None else float(C)
        self.metadata = metadata
        self.selection = selection
        self.training = training
        self.weights: FloatArray | None = None
        self.intercept = float(intercept)
        self.imputation = np.full(len(self.names), 0.5)
        if weights is not None:
            self.weights = np.array(per_member("weights", weights, self.names))
        if imputation is not None:
            values = per_member("imputation", imputation, self.names)
            if not all(0.0 <= v <= 1.0 for v in values):
                raise ConfigError(f"Ensemble imputation values are confidences in [0, 1]: {values}")
            self.imputation = np.array(values)

    def _set_members(self, built: Sequence[Estimator]) -> None:
        if not built:
            raise ConfigError("an Ensemble needs at least one member estimator")
        names = [m.name for m in built]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"Ensemble members must have distinct names; repeated: {', '.join(repeated)}"
            )
        self.members: tuple[Estimator, ...] = tuple(built)
        self.names = tuple(names)
        self.unbuilt = {m.name: m.reason for m in built if isinstance(m, Unbuilt)}
        self.needs: Needs = functools.reduce(Needs.merge, (m.needs for m in built), NOTHING)
        self.in_process = all(m.in_process for m in built)

    @classmethod
    def by_name(cls, names: Sequence[str], **options: Any) -> Self:
        """An unfitted ensemble of members named by eval-row keys: a registered estimator that
        takes no options is built; any other is known by name only (its options are unknown)."""
        return cls([from_row_key(n) for n in names], **options)

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

    def _matrix(self, rows: Sequence[Row], names: Sequence[str] | None = None) -> FloatArray:
        """Rows of member confidences as a matrix, NaN where a member gave none."""
        names = self.names if names is None else names
        matrix = np.full((len(rows), len(names)), np.nan)
        for i, row in enumerate(rows):
            for j, name in enumerate(names):
                value = row.get(name)
                if value is not None:
                    matrix[i, j] = value
        outside = (matrix < 0.0) | (matrix > 1.0)  # False for NaN
        if outside.any():
            at = ", ".join(
                f"row {i} {names[j]}={float(matrix[i, j])!r}" for i, j in np.argwhere(outside)[:5]
            )
            raise ConfigError(
                f"member confidences must lie in [0, 1] (None or NaN when missing); got {at}"
            )
        return matrix

    def _linear(self, matrix: FloatArray) -> FloatArray:
        filled = np.where(np.isnan(matrix), self.imputation, matrix)
        z: FloatArray = self.intercept + clipped_logit(filled, self.clip) @ self._require_fitted()
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
        select: bool = True,
        folds: int = DEFAULT_FOLDS,
        seed: int = 0,
    ) -> Self:
        """Choose members, then learn weights, intercept and imputation from labelled answers.

        `rows[i]` maps member names to answer i's confidences (None or NaN when a member gave
        none; other keys are ignored); `correct[i]` says whether answer i was right. Rows in
        which every member is missing are left out, as the ensemble gives no score there.
        With `select` (the default) redundant members are dropped, and the ensemble becomes
        its best member alone when the combination does not beat it under inner
        cross-validation (`folds` folds, shuffled by `seed`); `selection` records the choice.
        """
        check_range("Ensemble.fit", "folds", folds, 2, integer=True)
        labels = check_labels(rows, correct)
        candidates = self.names
        matrix, y = fitting_rows(self._matrix(rows), labels, candidates, rows)
        fitted = fit_combination(
            matrix, y, candidates, C=self.C, select=select, folds=folds, seed=seed, clip=self.clip
        )
        self._set_members([self.members[j] for j in fitted.kept])
        self.weights, self.intercept = fitted.weights, fitted.intercept
        self.imputation = fitted.imputation
        self.selection = fitted.selection
        self.training = fingerprint(matrix, y, candidates)
        combined = sigmoid(self._linear(matrix[:, list(fitted.kept)]))
        self.metadata = FitMetadata(
            estimators=self.names,
            model=model,
            data=data,
            fitted_at=utc_now(),
            n=len(y),
            metrics=fit_metrics(self.name, candidates, matrix, y, combined),
        )
        return self

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The saved document (format version 2); ConfigError when a member cannot be written."""
        weights = self._require_fitted()
        return {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "name": self.name,
            "members": [member_spec(m).model_dump(mode="json") for m in self.members],
            "weights": weights.tolist(),
            "intercept": self.intercept,
            "imputation": self.imputation.tolist(),
            "options": {"member_timeout_s": self.member_timeout_s, "C": self.C, "clip": self.clip},
            "selection": self.selection.model_dump(mode="json") if self.selection else None,
            "training": self.training.model_dump(mode="json") if self.training else None,
            "metadata": self.metadata.model_dump(mode="json") if self.metadata else None,
        }

    @classmethod
    def from_dict(
        cls,
        document: Mapping[str, Any],
        members: Sequence[Estimator] | None = None,
        what: str = "the ensemble",
    ) -> Self:
        """Rebuild a saved ensemble. Members are built from their saved kind and options, or
        taken from `members` (matched by name) when given."""
        parsed = parse_document(document, what)
        given = {m.name: m for m in members or ()}
        unknown = sorted(set(given) - {spec.name for spec in parsed.members})
        if unknown:
            raise ConfigError(
                f"{what} has no member(s) {', '.join(unknown)}; its members are "
                f"{', '.join(spec.name for spec in parsed.members)}"
            )
        built = [given.get(spec.name) or build_member(spec, what) for spec in parsed.members]
        options = parsed.options
        return cls(
            built,
            weights=parsed.weights,
            intercept=parsed.intercept,
            imputation=parsed.imputation,
            name=parsed.name,
            member_timeout_s=options.get("member_timeout_s"),
            C=options.get("C"),
            clip=options.get("clip", CLIP),
            metadata=parsed.metadata,
            selection=parsed.selection,
            training=parsed.training,
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
    """Load a saved Ensemble with its members rebuilt (for configs: {name: ensemble, path})."""
    return Ensemble.load(path)


__all__ = ["Ensemble", "load_ensemble"]

"""An Ensemble's members and its saved document: how members are named, built and written.

Format version 2 writes each member as an `EstimatorSpec` (name, registry kind, every option),
the clip applied before the logit, what fitting chose (`selection`) and a fingerprint of the
training data (sha256 over the rows used, in member order, with their labels). Version 1 files,
whose members carry a name and only the options that differ from the defaults, still load.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from demur.bases import EstimatorBase
from demur.calibration.files import FitMetadata, check_format
from demur.calibration.metrics import FloatArray
from demur.errors import ConfigError
from demur.estimators._ensemble_fit import Labels, Selection
from demur.estimators.specs import EstimatorSpec, build_from_spec, estimator_spec
from demur.protocols import NOTHING, Attempt, Estimator, check_component
from demur.types import Score

KIND = "ensemble"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Version 1 clipped confidences this close to 0 and 1 before the logit.
V1_CLIP = 1e-9


class Unbuilt(EstimatorBase):
    """A member known only by name: its stored scores can be combined, not computed."""

    needs = NOTHING

    def __init__(self, name: str, reason: str, spec: EstimatorSpec | None = None) -> None:
        self.name = name
        self.reason = reason
        self.spec = spec or EstimatorSpec(name=name)

    async def aestimate(self, attempt: Attempt) -> Score:
        raise ConfigError(f"ensemble member '{self.name}' was never built: {self.reason}")

    def __repr__(self) -> str:
        return f"<{self.name}: by name only>"


def from_row_key(name: str) -> Estimator:
    """A member named by a row key: built from the registry when the name is a registered
    estimator that takes no options; known by name only otherwise, since the rows do not
    record the options it was built with."""
    from demur.estimators.registry import ESTIMATORS, build_estimator, estimator_class

    if name in ESTIMATORS and not inspect.signature(estimator_class(name)).parameters:
        return build_estimator(name)
    return Unbuilt(
        name,
        "the rows do not record how it was built; pass the estimator itself: "
        "Ensemble([...]).fit(rows, correct), or Ensemble.load(path, members=[...])",
    )


def resolve(member: Estimator | str) -> Estimator:
    """An estimator object for a member given as one, or by registry name (built with its
    default options; a name the registry cannot build is kept by name only)."""
    if not isinstance(member, str):
        check_component("ensemble member", member, Estimator, "EstimatorBase")
        return member
    from demur.estimators.registry import build_estimator

    try:
        return build_estimator(member)
    except ConfigError as exc:
        return Unbuilt(member, str(exc))


def member_spec(member: Estimator) -> EstimatorSpec:
    return member.spec if isinstance(member, Unbuilt) else estimator_spec(member)


def build_member(spec: EstimatorSpec, what: str) -> Estimator:
    """The member a saved spec describes, or one known by name only when it cannot be built."""
    if spec.kind is None:
        return Unbuilt(spec.name, "it is not of a registered estimator class", spec)
    try:
        return build_from_spec(spec)
    except ConfigError as exc:
        return Unbuilt(spec.name, f"{what} could not rebuild it: {exc}", spec)


def per_member(
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


# --- the training data's fingerprint ----------------------------------------------------------


class TrainingData(BaseModel):
    """Which data an ensemble was fitted on: the candidate columns, the rows and their hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    rows: int = Field(ge=0)
    columns: tuple[str, ...]


def fingerprint(matrix: FloatArray, y: Labels, names: Sequence[str]) -> TrainingData:
    """sha256 over the rows fitted on: each row's confidences in `names` order (null when
    missing, floats as Python writes them) and its label, as compact JSON lines."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(names)).encode())
    for row, label in zip(matrix.tolist(), y.tolist(), strict=True):
        values = [None if math.isnan(v) else v for v in row]
        digest.update(b"\n" + json.dumps([values, bool(label)], separators=(",", ":")).encode())
    return TrainingData(sha256=digest.hexdigest(), rows=len(y), columns=tuple(names))


# --- the document -----------------------------------------------------------------------------


class _V1Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class EnsembleDocument(BaseModel):
    """A saved ensemble, as `Ensemble.to_dict` writes it (format version 2)."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    version: int
    name: str
    members: list[EstimatorSpec] = Field(min_length=1)
    weights: list[float]
    intercept: float
    imputation: list[float]
    options: dict[str, Any] = Field(default_factory=dict)
    selection: Selection | None = None
    training: TrainingData | None = None
    metadata: FitMetadata | None = None


class _V1Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    version: int
    name: str
    members: list[_V1Member] = Field(min_length=1)
    weights: list[float]
    intercept: float
    imputation: list[float]
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: FitMetadata | None = None

    def upgraded(self) -> EnsembleDocument:
        """The same ensemble as a version-2 document: members kind by name, the old clip."""
        members = [EstimatorSpec(name=m.name, kind=m.name, options=m.options) for m in self.members]
        fields = self.model_dump(exclude={"members", "options"})
        options = {"clip": V1_CLIP, **self.options}
        return EnsembleDocument.model_validate({**fields, "members": members, "options": options})


def check_version(document: Mapping[str, Any], what: str) -> None:
    """ConfigError unless `document` is an ensemble of a version this demur reads."""
    readable = " and ".join(str(v) for v in READABLE_VERSIONS)
    check_format(
        document,
        KIND,
        READABLE_VERSIONS,
        what,
        wrong_kind="; load it with the matching class (load_calibrator(path) for calibrators)",
        wrong_version=f"this demur reads ensemble versions {readable}. Refit it with this demur "
        "(`demur ensemble fit RESULTS`) or upgrade demur to the version that wrote it.",
    )


def parse_document(document: Mapping[str, Any], what: str) -> EnsembleDocument:
    """A validated version-2 document from a saved one of any readable version."""
    from demur.calibration.files import validated

    check_version(document, what)
    if document.get("version") == 1:
        return validated(_V1Document, document, what).upgraded()
    return validated(EnsembleDocument, document, what)


__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "READABLE_VERSIONS",
    "EnsembleDocument",
    "TrainingData",
    "Unbuilt",
    "build_member",
    "check_version",
    "fingerprint",
    "from_row_key",
    "member_spec",
    "parse_document",
    "per_member",
    "resolve",
]

"""Saving fitted objects: versioned JSON documents that keep what they were fitted on.

Each document has a "kind" (which class reads it) and a format "version"; `FitMetadata` records
the estimators, model and data a calibrator, conformal threshold or ensemble was fitted on, when,
on how many examples, and its metrics there. Reading a file that is missing, malformed, of
another kind or of another version raises a ConfigError that says so.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from demur.errors import ConfigError

FORMAT_VERSION = 1

PathLike = str | os.PathLike[str]
M = TypeVar("M", bound=BaseModel)


class FitMetadata(BaseModel):
    """What a fitted object was fitted on, and how well it did there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    estimators: tuple[str, ...] = ()
    model: str | None = None
    data: str | None = None
    fitted_at: str = Field(description="ISO-8601 UTC time of fitting")
    n: int = Field(ge=0, description="number of labelled examples fitted on")
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _nan_is_null(cls, value: dict[str, dict[str, float | None]]) -> dict[str, Any]:
        # JSON has no NaN: an undefined metric is stored as null.
        return {
            group: {k: None if v is None or math.isnan(v) else v for k, v in metrics.items()}
            for group, metrics in value.items()
        }


def utc_now() -> str:
    """The current time as ISO-8601 UTC, e.g. 2026-05-01T12:00:00Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_json(text: str | bytes, what: str) -> dict[str, Any]:
    """A JSON object, or a ConfigError naming `what` and where the JSON breaks."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must hold a JSON object, got {type(value).__name__}")
    return value


def read_json(path: PathLike, what: str) -> dict[str, Any]:
    """Read a JSON object from a file; ConfigError when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file '{path}': {exc.strerror}") from None
    return parse_json(text, f"the {what} file '{path}'")


def write_json(path: PathLike, document: Mapping[str, Any]) -> None:
    """Write a JSON object to a file, creating its folder."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(document, indent=2) + "\n")


def check_format(
    document: Mapping[str, Any],
    kind: str,
    versions: tuple[int, ...],
    what: str,
    *,
    wrong_kind: str,
    wrong_version: str,
) -> None:
    """ConfigError unless `document` is a `kind` document of one of `versions`.

    `wrong_kind` finishes the message for another kind (after "not 'KIND'"), `wrong_version`
    the one for another version (after "has format version V; "): what to do instead.
    """
    found = document.get("kind")
    if found != kind:
        raise ConfigError(f"{what} holds kind {found!r}, not {kind!r}{wrong_kind}")
    version = document.get("version")
    if version not in versions:
        raise ConfigError(f"{what} has format version {version!r}; {wrong_version}")


def check_document(document: Mapping[str, Any], kind: str, what: str) -> None:
    """ConfigError unless `document` is a version-FORMAT_VERSION document of this kind."""
    check_format(
        document,
        kind,
        (FORMAT_VERSION,),
        what,
        wrong_kind="; load it with the matching class "
        "(load_calibrator(path) picks the calibrator class from the file)",
        wrong_version=f"this demur reads version {FORMAT_VERSION}. Refit and save it with this "
        "version of demur.",
    )


def validated(model: type[M], data: object, what: str) -> M:
    """Validate `data` as `model`; a ConfigError lists every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{what} is malformed: {problems}") from None


class JsonDocument(BaseModel):
    """A frozen pydantic model saved as a versioned JSON document of one `document_kind`.

    Subclasses set `document_kind` ("conformal_threshold", ...) and `document_name`, the
    words error messages use ("conformal threshold").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_kind: ClassVar[str]
    document_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.document_kind,
            "version": FORMAT_VERSION,
            **self.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], what: str | None = None) -> Self:
        what = what or f"the {cls.document_name}"
        check_document(document, cls.document_kind, what)
        fields = {key: value for key, value in document.items() if key not in ("kind", "version")}
        return validated(cls, fields, what)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(parse_json(text, f"the {cls.document_name} JSON"))

    def save(self, path: PathLike) -> None:
        """Write it, with what it was fitted on, to a JSON file."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """Read a file written by `save`; ConfigError when it is missing or malformed."""
        what = f"the {cls.document_name} file '{path}'"
        return cls.from_dict(read_json(path, cls.document_name), what)


__all__ = [
    "FORMAT_VERSION",
    "FitMetadata",
    "JsonDocument",
    "PathLike",
    "check_document",
    "check_format",
    "parse_json",
    "read_json",
    "utc_now",
    "validated",
    "write_json",
]

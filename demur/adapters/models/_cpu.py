"""Whether llama.cpp's extra CPU buffer types are safe on this processor.

llama.cpp repacks weights into "extra buffer types" for faster matrix kernels. Its AMX buffer
type crashes with SIGSEGV inside `decode` on some CPUs with Intel AMX (cloud Sapphire Rapids
VMs among them), so demur turns the extra buffer types off wherever the CPU reports AMX and
keeps them elsewhere, where they are safe and faster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "amx_complex"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags the kernel reports for this CPU; empty where /proc/cpuinfo is absent."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


@dataclass(frozen=True)
class ExtraBuffers:
    """The decision on llama.cpp's extra buffer types, and why it was made."""

    enabled: bool
    reason: str


def decide_extra_buffers(setting: bool | None, flags: Iterable[str]) -> ExtraBuffers:
    """Honour an explicit `setting`; otherwise enable them unless the CPU has AMX."""
    if setting is not None:
        state = "on" if setting else "off"
        return ExtraBuffers(setting, f"extra buffer types {state}: set by extra_buffers={setting}")
    amx = sorted(AMX_FLAGS.intersection(flags))
    if amx:
        return ExtraBuffers(
            False,
            f"extra buffer types off: this CPU has AMX ({', '.join(amx)}), where llama.cpp's "
            "AMX buffer type can crash; pass extra_buffers=True to force them on",
        )
    return ExtraBuffers(True, "extra buffer types on: this CPU has no AMX")

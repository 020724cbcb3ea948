"""How the benchmark page writes a figure: shares as whole percents, intervals in brackets."""

from __future__ import annotations


def pct(value: float | None) -> str:
    """0.734 -> "73%"; None -> "—"."""
    return "—" if value is None else f"{value:.0%}"


def ci(bounds: list[float] | None, pct: bool = True) -> str:
    """A 95% interval: "[61%, 78%]" for shares, "[0.612, 0.781]" for scores; "" without one."""
    if not bounds:
        return ""
    low, high = bounds
    return f"[{low:.0%}, {high:.0%}]" if pct else f"[{low:.3f}, {high:.3f}]"

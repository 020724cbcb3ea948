"""How the benchmark page writes a figure: shares as whole percents, differences of shares in
percentage points, intervals in brackets."""

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


def points(value: float) -> str:
    """A difference of shares: 0.085 -> "+8.5 points"."""
    return f"{value * 100:+.1f} points"


def points_ci(bounds: list[float]) -> str:
    """A 95% interval of a difference of shares: "[+8.2, +12.2]"."""
    low, high = bounds
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]"

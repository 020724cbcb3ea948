"""The eval report's plots: counts and intervals on reliability bins, every curve visible."""

from __future__ import annotations

import numpy as np
import pytest

from demur.evaluation.report import curve_styles, draw_curves, draw_reliability

plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture
def ax():
    fig, axes = plt.subplots()
    yield axes
    plt.close(fig)


def test_reliability_bins_show_their_counts_and_wilson_intervals(ax):
    confidence = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([False, False, True, True, True, True, False])
    draw_reliability(ax, confidence, correct, "m")
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "4"]
    (errorbars,) = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    segments = errorbars.lines[2][0].get_segments()
    lows_highs = sorted((round(s[0][1], 3), round(s[1][1], 3)) for s in segments)
    # Wilson 95%: 0 of 1, 1 of 2, 3 of 4.
    assert lows_highs == [(0.0, 0.793), (0.095, 0.905), (0.301, 0.954)]


def test_every_curve_has_its_own_style_and_a_legend_entry(ax):
    x = np.linspace(0, 1, 5)
    curves = {f"e{i}": (x, x**i) for i in range(12)}
    curves["copy"] = curves["e3"]
    draw_curves(ax, curves)
    lines = ax.get_lines()
    assert len(lines) == 13
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 13
    widths = [line.get_linewidth() for line in lines]
    assert widths == sorted(widths, reverse=True)  # later curves are thinner, on top
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:12] == [f"e{i}" for i in range(12)]
    assert labels[12] == "copy (= e3)"


def test_styles_differ_well_past_the_colour_cycle():
    styles = curve_styles(40)
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 40

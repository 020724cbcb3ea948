"""From eval results to a calibration file, and from the file into a working router."""

from __future__ import annotations

import json
import random
import textwrap

import pytest
import yaml

from demur import ConfigError, Ladder
from demur.calibration.bundle import CalibrationBundle, fit_bundle
from demur.calibration.conformal import ConformalThreshold
from demur.cli import main
from demur.config import load_router
from demur.errors import NoValidThresholdError


def synthetic_rows(n: int = 600, seed: int = 1) -> list[dict]:
    """Rows whose mean_logprob confidence is right about as often as it says, cubed."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = rng.random()
        correct = rng.random() < p
        rows.append(
            {
                "id": f"r{i}",
                "correct": correct,
                "scores": {"mean_logprob": {"confidence": p**3, "status": "ok"}},
            }
        )
    return rows


def write_run(folder, rows):
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({"model": "m", "estimators": ["mean_logprob"]}))
    return folder


def test_fit_bundle_calibrates_and_bounds_the_error():
    bundle, report = fit_bundle(synthetic_rows(), ["mean_logprob"], alpha=0.2, delta=0.1)
    assert report["calibrator_rows"] == report["conformal_rows"] == 300
    assert bundle.calibrator.calibrate(0.5**3) == pytest.approx(0.5, abs=0.15)
    conformal = bundle.conformal
    assert conformal is not None
    assert conformal.bound <= 0.2
    assert 0.0 < conformal.coverage < 1.0


def test_cli_calibrate_then_route_with_the_file(tmp_path, capsys):
    run = write_run(tmp_path / "run", synthetic_rows())
    out = tmp_path / "calibration.json"
    assert main(["calibrate", str(run), "--alpha", "0.2", "--delta", "0.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conformal threshold" in printed and "held-out" in printed
    bundle = CalibrationBundle.load(out)
    config = tmp_path / "demur.yaml"
    config.write_text(
        f"""
models:
  m: {{kind: scripted, replies: [{{text: "Paris", logprobs: [-0.01]}}]}}
estimators: [mean_logprob]
calibration: {out}
policy: {{threshold: conformal}}
"""
    )
    router = load_router(config)
    assert isinstance(router.policy, Ladder)
    assert router.policy.threshold == pytest.approx(bundle.conformal.threshold)
    verdict = router.route("Capital of France?")
    assert verdict.calibrated
    assert verdict.steps[0].raw_confidence == pytest.approx(0.99, abs=0.001)
    assert verdict.confidence == pytest.approx(bundle.calibrator.calibrate(0.99005), abs=1e-6)


def test_a_calibration_for_other_estimators_is_refused(tmp_path):
    bundle, _ = fit_bundle(synthetic_rows(), ["mean_logprob"], alpha=None)
    path = tmp_path / "calibration.json"
    bundle.save(path)
    config = tmp_path / "demur.yaml"
    config.write_text(
        f"""
models:
  m: {{kind: scripted, replies: ["x"]}}
estimators: [min_prob]
calibration: {path}
policy: {{threshold: conformal}}
"""
    )
    with pytest.raises(ConfigError, match="fitted for estimators \\['mean_logprob'\\]"):
        load_router(config)


def test_conformal_threshold_needs_a_calibration_file():
    from demur.config import parse_config

    with pytest.raises(ConfigError, match="add `calibration: calibration.json`"):
        parse_config(
            {
                "models": {"m": {"kind": "scripted", "replies": ["x"]}},
                "policy": {"threshold": "conformal"},
            }
        )


def test_ladder_takes_a_fitted_threshold():
    fitted = ConformalThreshold(
        threshold=0.7,
        alpha=0.1,
        delta=0.1,
        n=100,
        accepted=50,
        errors=2,
        empirical_error=0.04,
        coverage=0.5,
        bound=0.09,
    )
    assert Ladder(fitted).threshold == 0.7


def test_too_few_rows_for_the_guarantee_is_explained(tmp_path, capsys):
    run = write_run(tmp_path / "run", synthetic_rows(n=30))
    code = main(
        [
            "calibrate",
            str(run),
            "--alpha",
            "0.01",
            "--delta",
            "0.01",
            "--out",
            str(tmp_path / "c.json"),
        ]
    )
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "alpha=0.01" in err
    assert "What would work: about " in err and "graded rows like these" in err
    assert "these rows support alpha=" in err
    assert "demur calibrate --no-conformal" in err


def test_the_alpha_these_rows_support_does_give_a_threshold(tmp_path):
    from demur.calibration.conformal import smallest_alpha

    rows = synthetic_rows(n=200)
    bundle, _ = fit_bundle(rows, ["mean_logprob"], alpha=None)
    confidence = [
        bundle.calibrator.calibrate(r["scores"]["mean_logprob"]["confidence"]) for r in rows
    ]
    correct = [r["correct"] for r in rows]
    alpha = smallest_alpha(confidence, correct, 0.1)
    assert alpha is not None
    ConformalThreshold.fit(confidence, correct, alpha, 0.1)
    with pytest.raises(NoValidThresholdError):
        ConformalThreshold.fit(confidence, correct, round(alpha - 0.01, 2), 0.1)


def test_the_printed_config_lines_load_the_calibration(tmp_path, capsys):
    run = write_run(tmp_path / "run", synthetic_rows())
    out = tmp_path / "calibration [v1].json"
    assert main(["calibrate", str(run), "--alpha", "0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    snippet = textwrap.dedent(printed.split("put this in a router config:\n", 1)[1])
    assert "{{" not in snippet
    config = yaml.safe_load(snippet)
    assert config == {
        "estimators": ["mean_logprob"],
        "combine": "mean",
        "calibration": str(out),
        "policy": {"threshold": "conformal"},
    }
    path = tmp_path / "demur.yaml"
    path.write_text(snippet + '\nmodels: {m: {kind: scripted, replies: ["x"]}}\n')
    router = load_router(path)
    assert router.policy.threshold == pytest.approx(CalibrationBundle.load(out).conformal.threshold)


def test_one_class_labels_are_explained(tmp_path, capsys):
    rows = synthetic_rows(n=50)
    for row in rows:
        row["correct"] = True
    run = write_run(tmp_path / "run", rows)
    assert main(["calibrate", str(run), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "all 25 examples are correct" in err and "needs some wrong answers too" in err


def test_calibrate_reports_unknown_estimators(tmp_path, capsys):
    run = write_run(tmp_path / "run", synthetic_rows(n=50))
    assert (
        main(["calibrate", str(run), "--estimators", "min_prob", "--out", str(tmp_path / "c.json")])
        == 2
    )
    assert "no graded row has a score from ['min_prob']" in capsys.readouterr().err


def test_the_config_lines_say_which_names_are_scores_not_registry_names():
    from pathlib import Path

    from demur.cli._calibrate import config_snippet

    snippet = config_snippet(
        ["min_prob", "agreement_rougeL"], "min", Path("c.json"), conformal=False
    )
    assert "# agreement_rougeL: scores' names" in snippet
    assert yaml.safe_load(textwrap.dedent(snippet)) == {
        "estimators": ["min_prob", "agreement_rougeL"],
        "combine": "min",
        "calibration": "c.json",
    }

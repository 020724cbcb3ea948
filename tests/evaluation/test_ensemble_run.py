"""From an eval run to a saved ensemble (`demur ensemble fit`), and into a router's config."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from demur import ConfigError, Ensemble
from demur.cli import main
from demur.config import load_router
from demur.evaluation.ensemble import fit_run_ensemble, read_results, run_members
from demur.evaluation.runner import EvalResults
from demur.evaluation.summary import ENSEMBLE, summarize_run

pytest.importorskip("sklearn")

NUM_SETS = {
    "name": "num_sets",
    "kind": "num_sets",
    "options": {"similarity": "jaccard", "samples": 4},
}


def eval_rows(n: int = 400, seed: int = 0) -> list[dict]:
    """Eval rows whose correctness depends on two signals, one per member."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=n), rng.normal(size=n)
    correct = rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * s1 + 1.5 * s2)))
    rows = []
    for i in range(n):
        scores = {
            "mean_logprob": 1 / (1 + np.exp(-s1[i])),
            "num_sets": round(float(1 / (1 + np.exp(-s2[i]))) * 4) / 4,
        }
        rows.append(
            {
                "id": f"q{i}",
                "correct": bool(correct[i]),
                "calls": 1,
                "latency_s": 0.0,
                "error": None,
                "scores": {k: {"confidence": float(v), "status": "ok"} for k, v in scores.items()},
            }
        )
    return rows


def write_run(folder, rows, settings):
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps(settings))
    return folder


SETTINGS = {"model": "weak", "estimators": ["mean_logprob", "num_sets"]}


def test_members_come_from_the_recorded_specs_or_the_given_spec(tmp_path):
    recorded = read_results(
        write_run(tmp_path / "a", eval_rows(), {**SETTINGS, "specs": {"num_sets": NUM_SETS}})
    )
    members = run_members(recorded)
    assert [m.name for m in members] == ["mean_logprob", "num_sets"]
    assert members[1].similarity == "jaccard" and members[1].samples == 4  # type: ignore[attr-defined]
    bare = read_results(write_run(tmp_path / "b", eval_rows(), SETTINGS))
    with pytest.raises(ConfigError, match="does not record how num_sets was built.*--estimators"):
        run_members(bare)
    given = run_members(bare, "mean_logprob,num_sets:similarity=jaccard:samples=4")
    assert [repr(m) for m in given] == [repr(m) for m in members]
    with pytest.raises(ConfigError, match="agreement_jaccard scored nothing"):
        run_members(bare, "agreement:similarity=jaccard")


def test_a_spec_takes_the_runs_samples_and_must_need_what_the_run_recorded(tmp_path):
    needs = {
        "mean_logprob": {"logprobs": True},
        "num_sets": {"samples": 19},
    }
    run = read_results(write_run(tmp_path / "run", eval_rows(), {**SETTINGS, "needs": needs}))
    members = run_members(run, "mean_logprob,num_sets:similarity=jaccard")
    assert members[1].samples == 19  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="num_sets as built needs .*samples=5.* other options"):
        run_members(run, "mean_logprob,num_sets:similarity=jaccard:samples=5")


def test_fit_run_ensemble_fits_on_graded_rows_and_cross_fits(tmp_path):
    rows = eval_rows()
    rows[0]["correct"] = None  # ungraded: left out
    results = read_results(
        write_run(tmp_path / "run", rows, {**SETTINGS, "specs": {"num_sets": NUM_SETS}})
    )
    fitted = fit_run_ensemble(results, run_members(results), folds=4, seed=1)
    assert fitted.ensemble.training is not None and fitted.ensemble.training.rows == 399
    assert fitted.ensemble.metadata is not None and fitted.ensemble.metadata.model == "weak"
    assert fitted.cross_fitted is not None and len(fitted.cross_fitted.chosen) == 4
    assert fitted.ensemble.selection is not None and fitted.ensemble.selection.seed == 1


def test_cli_fits_saves_shows_and_a_config_routes_with_it(tmp_path, capsys):
    run = write_run(tmp_path / "run", eval_rows(), {**SETTINGS, "specs": {"num_sets": NUM_SETS}})
    out = tmp_path / "ensemble.json"
    assert (
        main(["ensemble", "fit", str(run), "--out", str(out), "--folds", "4", "--no-select"]) == 0
    )
    printed = capsys.readouterr().out
    assert "cross-fitted (4 folds" in printed and "AUROC" in printed
    document = json.loads(out.read_text())
    assert document["version"] == 2 and document["training"]["rows"] == 400
    assert document["members"][1]["options"]["similarity"] == "jaccard"

    assert main(["ensemble", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "num_sets" in shown and "jaccard" in shown and "sha256" in shown

    config = tmp_path / "demur.yaml"
    config.write_text(
        f"""
models:
  m: {{kind: scripted, replies: [{{text: "Paris", logprobs: [-0.05]}}]}}
estimators: [{{name: ensemble, path: {out}}}]
policy: {{threshold: 0.0}}
"""
    )
    router = load_router(config)
    (ensemble,) = router.estimators
    assert isinstance(ensemble, Ensemble) and not ensemble.unbuilt
    verdict = router.route("Capital of France?")
    (score,) = verdict.steps[0].scores
    assert score.estimator == "ensemble" and score.status == "ok", score.detail


def test_cli_errors_name_the_fix(tmp_path, capsys):
    run = write_run(tmp_path / "run", eval_rows(), SETTINGS)
    assert main(["ensemble", "fit", str(run), "--out", str(tmp_path / "e.json")]) == 2
    assert "--estimators" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "ensemble", "version": 9}))
    assert main(["ensemble", "show", str(bad)]) == 2
    assert "format version 9" in capsys.readouterr().err


def test_the_eval_summary_reports_the_cross_fitted_ensemble_and_its_choices(tmp_path):
    results = EvalResults(out_dir=tmp_path, settings={**SETTINGS}, rows=eval_rows())
    summary = summarize_run(results, folds=3, seed=2)
    entry = summary["estimators"][ENSEMBLE]
    assert entry["members"] == ["mean_logprob", "num_sets"] and len(entry["chosen"]) == 3
    assert entry["raw"]["auroc"] > summary["estimators"]["mean_logprob"]["raw"]["auroc"]
    assert entry["calibrated"]["ece"] < 0.1
    assert summary["calibration"] == {"method": "isotonic", "folds": 3, "seed": 2}


def test_an_eval_run_records_how_each_estimator_was_built(tmp_path: pathlib.Path) -> None:
    import asyncio

    from demur.estimators import parse_estimators
    from demur.evaluation import EvalDataset, EvalItem, run_eval

    dataset = EvalDataset(
        items=[
            EvalItem(
                id="a",
                question="Q?",
                answers=("Paris",),
                response="Paris",
                samples=("Paris", "Lyon", "Paris"),
            ),
        ]
    )
    estimators = parse_estimators("agreement:similarity=jaccard:samples=3,entropy:top_k=3")
    results = asyncio.run(run_eval(dataset, tmp_path / "run", estimators=estimators))
    specs = results.settings["specs"]
    assert specs["agreement_jaccard"]["options"]["similarity"] == "jaccard"
    assert specs["agreement_jaccard"]["options"]["samples"] == 3
    assert specs["entropy"]["options"]["top_k"] == 3

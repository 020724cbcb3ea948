"""`demur eval` on logged rows: labels, unknown fields, every logged sample, runs that score
nothing, and options checked before any row is scored."""

from __future__ import annotations

import json

import pytest

from demur import ConfigError, MeanTokenLogprob, PermanentModelError, ScriptedModel
from demur.cli import _eval, main
from demur.evaluation import load_dataset, run_eval


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def logged_rows(n: int = 6, samples: int = 19) -> list[dict]:
    """Rows with a logged response, `samples` logged samples and logprobs; half are right."""
    rows = []
    for i in range(n):
        right = i % 2 == 0
        answer = "Paris" if right else "Lyon"
        rows.append(
            {
                "id": f"q{i}",
                "question": f"Capital {i}?",
                "answers": ["Paris"],
                "response": answer,
                "samples": [answer] * (samples - 1) + ["Nice"],
                "logprobs": [-0.05 if right else -1.5],
            }
        )
    return rows


def results_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


async def test_a_label_grades_the_logged_response_instead_of_the_answers(tmp_path):
    rows = [
        {"id": "a", "question": "Q?", "answers": ["Paris"], "response": "Paris", "label": 0},
        {"id": "b", "question": "Q?", "response": "It is Lyon", "correct": True},
        {"id": "c", "question": "Q?", "response": "Rome", "label": False, "correct": 0},
        {"id": "d", "question": "Q?", "answers": ["Paris"], "response": "Paris"},
    ]
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [item.label for item in dataset.items] == [False, True, False, None]
    results = await run_eval(dataset, tmp_path / "out", estimators=[MeanTokenLogprob()])
    assert [(r["correct"], r["graded_by"]) for r in results.rows] == [
        (False, "label"),
        (True, "label"),
        (False, "label"),
        (True, "auto"),
    ]
    assert results.settings["grader"] == "label, else auto"


def test_labels_that_cannot_be_read_are_reported_by_row(tmp_path):
    rows = [
        {"question": "Q?", "response": "a", "label": "yes"},
        {"question": "Q?", "response": "a", "label": 2},
        {"question": "Q?", "response": "a", "label": True, "correct": False},
        {"question": "Q?", "label": True},
        {"question": "Q?", "response": "a"},
        {"question": "Q?", "response": "a", "label": 1},
    ]
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert len(dataset.items) == 1
    messages = [p.message for p in dataset.problems]
    assert "'label' must be true/false or 1/0, got 'yes'" in messages[0]
    assert "got 2" in messages[1]
    assert "disagree" in messages[2]
    assert "the row has none" in messages[3]
    assert 'or a "label": true/false' in messages[4]


async def test_labels_do_not_grade_a_models_new_answers(tmp_path):
    rows = [{"id": "a", "question": "Q?", "response": "x", "label": True}]
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    model = ScriptedModel("m", ["x"])
    with pytest.raises(ConfigError, match="have a 'label' but no gold 'answers'"):
        await run_eval(dataset, tmp_path / "out", model=model, estimators=[])
    assert model.calls == []


def test_unknown_fields_are_named_once_with_the_known_ones(tmp_path, capsys):
    rows = logged_rows(4)
    for row in rows:
        row["lable"], row["meta"] = 1, {"source": "web"}
    rows[0]["extra"] = True
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    assert (
        main(["eval", str(data), "--estimators", "mean_logprob", "--out", str(tmp_path / "o")]) == 0
    )
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("ignored unknown row field(s)") == 1
    assert "'extra' (1 row), 'lable' (4 rows; did you mean 'label'?), 'meta' (4 rows)" in out
    assert "Known fields: id, question, answers" in out


def test_every_logged_sample_is_used_unless_capped(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows(samples=19))
    spec = "agreement:similarity=jaccard"
    assert main(["eval", str(data), "--estimators", spec, "--out", str(tmp_path / "all")]) == 0
    assert "every logged sample, up to 19 per row" in " ".join(capsys.readouterr().out.split())
    assert {r["samples"] for r in results_of(tmp_path / "all")} == {19}
    assert (
        main(
            [
                "eval",
                str(data),
                "--estimators",
                spec,
                "--samples",
                "5",
                "--out",
                str(tmp_path / "5"),
            ]
        )
        == 0
    )
    assert {r["samples"] for r in results_of(tmp_path / "5")} == {5}
    capped = f"{spec}:samples=3"
    assert main(["eval", str(data), "--estimators", capped, "--out", str(tmp_path / "3")]) == 0
    assert {r["samples"] for r in results_of(tmp_path / "3")} == {3}


def test_several_similarity_measures_run_side_by_side(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows())
    spec = (
        "agreement:similarity=jaccard,name=agreement_jaccard,"
        "agreement:similarity=rougeL,name=agreement_rougeL,agreement:samples=2,name=agreement_2"
    )
    assert main(["eval", str(data), "--estimators", spec, "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    for name in ("agreement_jaccard", "agreement_rougeL", "agreement_2"):
        assert summary["estimators"][name]["available"] == 6


def test_folds_and_seed_reach_the_summary(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows(n=12))
    out = tmp_path / "o"
    argv = ["eval", str(data), "--estimators", "mean_logprob", "--out", str(out)]
    assert main([*argv, "--folds", "3", "--seed", "7"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"]["folds"] == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--calibration", "isotonik"], "unknown --calibration 'isotonik'. Did you mean"),
        (["--folds", "1"], "--folds must be at least 2"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--temperature", "5"], "invalid sampling options: temperature"),
        (["--estimators", "agreement:samples=500"], "samples"),
        (["--estimators", "agreement,agreement"], "two estimators are named"),
    ],
)
def test_options_are_checked_before_any_row_is_scored(tmp_path, capsys, flags, message):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows())
    assert main(["eval", str(data), "--out", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_empty_file_is_named_as_such(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text("\n")
    assert main(["eval", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "is empty; write one JSON object per line" in capsys.readouterr().err


def test_a_run_where_no_row_got_an_answer_says_why_and_fails(tmp_path, capsys, monkeypatch):
    failing = ScriptedModel("m", [PermanentModelError("the model is gone", model="m")])
    monkeypatch.setattr(_eval, "_eval_model", lambda name, config: failing)
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "answers": ["a"]} for i in range(3)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    assert main(["eval", str(data), "--model", "m", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "none of the 3 rows got an answer to grade (3× " in err
    assert "the model is gone" in err
    assert (tmp_path / "o" / "results.json").exists()


def test_a_run_no_estimator_could_score_says_why_and_fails(tmp_path, capsys):
    rows = [{"id": "a", "question": "Q?", "answers": ["a"], "response": "a"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    assert (
        main(["eval", str(data), "--estimators", "mean_logprob", "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "no estimator scored any of the 1 graded rows: mean_logprob: 1× unavailable" in err


async def test_a_row_whose_model_fails_is_recorded_and_the_run_goes_on(tmp_path):
    def script(request):
        if "Q1?" in request.messages[-1].content:
            return PermanentModelError("refused", model="m")
        return "Paris"

    rows = [{"id": f"q{i}", "question": f"Q{i}?", "answers": ["Paris"]} for i in range(3)]
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    results = await run_eval(
        dataset, tmp_path / "out", model=ScriptedModel("m", script), estimators=[]
    )
    assert [r["correct"] for r in results.rows] == [True, None, True]
    assert "refused" in results.rows[1]["error"]


def test_replayed_adaptive_sampling_saves_samples_and_a_unanimity_level_keeps_the_ranking(
    tmp_path,
):
    right = {"question": "Q?", "response": "Paris", "samples": ["Paris"] * 10, "label": 1}
    lucky = {"question": "Q?", "response": "Lyon", "samples": ["Lyon"] * 2 + ["Nice"] * 8}
    rows = [{**right, "id": "right"}, {**lucky, "id": "wrong", "label": 0}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    spec = ["--estimators", "agreement:similarity=exact"]

    def run(folder, *flags):
        assert main(["eval", str(data), *spec, "--out", str(tmp_path / folder), *flags]) == 0
        return {r["id"]: r for r in results_of(tmp_path / folder)}

    full, plain = run("full"), run("plain", "--adaptive")
    level = run("level", "--adaptive", "--unanimity-level", "0.1")
    assert [full[i]["samples"] for i in ("right", "wrong")] == [10, 10]
    assert [plain[i]["samples"] for i in ("right", "wrong")] == [2, 2]
    assert plain["wrong"]["scores"]["agreement_exact"]["confidence"] == 1.0  # as sure as right
    assert [level[i]["samples"] for i in ("right", "wrong")] == [4, 10]
    assert level["wrong"]["scores"]["agreement_exact"]["confidence"] == pytest.approx(0.2)


def test_a_unanimity_level_needs_adaptive_sampling(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows())
    assert main(["eval", str(data), "--unanimity-level", "0.1", "--out", str(tmp_path / "o")]) == 2
    assert "add --adaptive" in capsys.readouterr().err


def test_a_judge_named_by_the_config_scores_logged_answers(tmp_path):
    config = tmp_path / "demur.yaml"
    config.write_text(
        'models: {grader: {kind: scripted, replies: ["yes"]}}\npolicy: {threshold: 0.5}\n'
    )
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows(n=2))
    argv = ["eval", str(data), "--config", str(config), "--out", str(tmp_path / "o")]
    assert main([*argv, "--estimators", "mean_logprob,judge:judge=grader"]) == 0
    scores = [r["scores"]["judge_grader"] for r in results_of(tmp_path / "o")]
    assert [s["status"] for s in scores] == ["ok", "ok"]


def test_a_judge_that_is_no_model_is_refused_before_any_row(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", logged_rows(n=2))
    argv = ["eval", str(data), "--estimators", "judge:judge=strnog", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "unknown model 'strnog'. Did you mean 'strong'?" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


async def test_scoring_fewer_samples_than_were_logged_is_not_silent(tmp_path):
    from demur.estimators.consistency import SampleAgreement
    from demur.evaluation.runner import UnusedSamplesWarning

    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", logged_rows(n=2, samples=19)))
    with pytest.warns(UnusedSamplesWarning, match="use 5 samples per row, and rows have up to 19"):
        await run_eval(dataset, tmp_path / "out", estimators=[SampleAgreement()])

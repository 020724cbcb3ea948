"""`demur eval`: datasets, running, resuming, logged answers, summaries and the report."""

from __future__ import annotations

import json
import math

import pytest

from demur import ConfigError, MeanTokenLogprob, Needs, Reply, Score, ScriptedModel
from demur.bases import EstimatorBase
from demur.cli import main
from demur.estimators.base import Attempt
from demur.evaluation import load_dataset, run_eval
from demur.evaluation.report import write_report
from demur.evaluation.summary import summarize_run, write_summary, write_tables

ROWS = [{"id": f"q{i}", "question": f"Question {i}?", "answers": ["right"]} for i in range(30)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def script_for(question_answers: dict[str, Reply]):
    def script(request):
        text = request.messages[-1].content
        for question, reply in question_answers.items():
            if question in text:
                return reply
        raise KeyError(text)

    return script


def model_right_when_confident() -> ScriptedModel:
    replies = {}
    for i in range(30):
        right = i % 3 != 0
        replies[f"Question {i}?"] = Reply.confident(
            "right" if right else "wrong", 0.9 if right else 0.3
        )
    return ScriptedModel("m", script_for(replies))


def test_dataset_rows_that_cannot_be_used_are_reported_and_the_rest_kept(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"question": "Q1?", "answers": ["a"]}\n'
        '{"question": "Q2?"}\n'
        "not json\n"
        '{"question": "", "answers": ["a"]}\n'
        '{"id": "x", "question": "Q3?", "answer": "b", "context": ["p1", "p2"]}\n'
        '{"id": "x", "question": "Q4?", "answer": "b"}\n'
    )
    dataset = load_dataset(path)
    assert [i.id for i in dataset.items] == ["line-1", "x"]
    assert dataset.items[1].context == ("p1", "p2")
    assert [(p.line, p.message.split(":")[0]) for p in dataset.problems] == [
        (2, "no gold answers"),
        (3, "Expecting value"),
        (4, "missing 'question' (a non-empty string)"),
        (6, "duplicate id 'x'"),
    ]


def test_a_dataset_with_no_usable_row_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no usable rows"):
        load_dataset(write_jsonl(tmp_path / "d.jsonl", [{"question": "Q?"}]))
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(tmp_path / "missing.jsonl")


async def test_run_grade_summarise_and_report(tmp_path):
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS))
    results = await run_eval(
        dataset,
        tmp_path / "out",
        model=model_right_when_confident(),
        estimators=[MeanTokenLogprob()],
    )
    assert len(results.rows) == 30
    assert sum(r["correct"] for r in results.rows) == 20
    summary = summarize_run(results)
    raw = summary["estimators"]["mean_logprob"]["raw"]
    assert raw["auroc"] == 1.0
    assert summary["accuracy"] == pytest.approx(20 / 30)
    assert summary["estimators"]["mean_logprob"]["calibrated"]["ece"] < raw["ece"]
    write_tables(results)
    write_summary(results, summary)
    report = write_report(results, summary)
    for name in (
        "results.json",
        "results.csv",
        "summary.json",
        "reliability.png",
        "risk_coverage.png",
        "roc.png",
    ):
        assert (tmp_path / "out" / name).exists(), name
    assert "mean_logprob" in report.read_text()


async def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    first = model_right_when_confident()
    await run_eval(
        load_dataset(path, limit=10), tmp_path / "out", model=first, estimators=[MeanTokenLogprob()]
    )
    results_file = tmp_path / "out" / "results.jsonl"
    results_file.write_text(results_file.read_text() + '{"id": "q10", "cut off')
    second = model_right_when_confident()
    results = await run_eval(
        load_dataset(path), tmp_path / "out", model=second, estimators=[MeanTokenLogprob()]
    )
    assert results.resumed == 10
    assert len(results.rows) == 30
    assert len(second.calls) == 20
    assert [r["id"] for r in results.rows] == [f"q{i}" for i in range(30)]


async def test_resuming_with_other_settings_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS[:3])
    await run_eval(
        load_dataset(path),
        tmp_path / "out",
        model=model_right_when_confident(),
        estimators=[MeanTokenLogprob()],
    )
    with pytest.raises(ConfigError, match="different settings .*estimators"):
        await run_eval(
            load_dataset(path), tmp_path / "out", model=model_right_when_confident(), estimators=[]
        )


class NaNEstimator(EstimatorBase):
    name = "nan"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        return Score(estimator="nan", value=0.5, confidence=math.nan)


class AsksModel(EstimatorBase):
    name = "asks"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        from demur import GenerationRequest

        await attempt.ask(GenerationRequest(prompt="Is it right?"))
        return Score(estimator="asks", confidence=1.0)


async def test_logged_answers_are_scored_without_a_model(tmp_path):
    rows = [
        {
            "id": "a",
            "question": "Q?",
            "answers": ["Paris"],
            "response": "Paris",
            "logprobs": [-0.1],
        },
        {"id": "b", "question": "Q?", "answers": ["Rome"], "response": "Milan"},
    ]
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    results = await run_eval(
        dataset, tmp_path / "out", estimators=[MeanTokenLogprob(), NaNEstimator(), AsksModel()]
    )
    first, second = results.rows
    assert first["correct"] is True and second["correct"] is False
    assert first["scores"]["mean_logprob"]["confidence"] == pytest.approx(math.exp(-0.1))
    assert second["scores"]["mean_logprob"]["status"] == "unavailable"
    assert first["scores"]["nan"]["status"] == "failed"
    assert "nan built an invalid Score" in first["scores"]["nan"]["detail"]
    assert "confidence must lie in [0, 1]" in first["scores"]["nan"]["detail"]
    assert first["scores"]["asks"]["status"] == "failed"
    assert "need a live model" in first["scores"]["asks"]["detail"]


async def test_logged_mode_needs_responses_on_every_row(tmp_path):
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS[:2]))
    with pytest.raises(ConfigError, match="no 'response' to score"):
        await run_eval(dataset, tmp_path / "out", estimators=[MeanTokenLogprob()])


async def test_unknown_grader_is_refused_before_any_work(tmp_path):
    model = model_right_when_confident()
    dataset = load_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS[:2]))
    with pytest.raises(ConfigError, match="Did you mean 'exact'"):
        await run_eval(dataset, tmp_path / "out", model=model, estimators=[], grader="exatc")
    assert model.calls == []


def test_the_report_escapes_what_came_from_data(tmp_path, capsys):
    rows = [
        {
            "id": "x",
            "question": "<script>alert(1)</script>",
            "answers": ["a"],
            "response": "<b>a</b>",
            "logprobs": [-0.1],
        }
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert (
        main(["eval", str(path), "--estimators", "mean_logprob", "--out", str(tmp_path / "out")])
        == 0
    )
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_cli_eval_errors_are_clear(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS[:2])
    assert main(["eval", str(path), "--model", "smolm2", "--out", str(tmp_path / "o")]) == 2
    assert "Did you mean 'smollm2-135m'" in capsys.readouterr().err
    assert main(["eval", str(path), "--estimators", "mean_logprb"]) == 2
    assert "Did you mean 'mean_logprob'" in capsys.readouterr().err
    assert main(["eval", str(path), "--estimators", "entropy:topk=3"]) == 2
    assert "has no option 'topk'" in capsys.readouterr().err


@pytest.mark.local_model
def test_eval_on_a_real_local_model(tmp_path, capsys):
    code = main(
        [
            "eval",
            "demur/demo/halueval_qa_sample.jsonl",
            "--model",
            "smollm2-135m",
            "--limit",
            "4",
            "--estimators",
            "mean_logprob,agreement:samples=2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["graded"] == 4
    agreement = summary["estimators"]["agreement_rougeL"]
    assert agreement["available"] == 4
    assert agreement["model_calls_per_question"] == 1.0  # one sampling call per question

"""Training rows for the pre-generation predictor from eval runs, queue exports and records."""

import json

import pytest

from demur.errors import ConfigError
from demur.evaluation.pregen_rows import (
    load_routing_rows,
    merge_rows,
    records_to_rows,
    rows_from_records,
    rows_from_run,
)
from demur.pregen import Outcome, RoutingRow


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _eval_row(id_, question, model, correct, latency=1.5):
    return {
        "id": id_,
        "question": question,
        "answers": ["x"],
        "response": "x",
        "correct": correct,
        "graded_by": "auto",
        "error": None,
        "model": model,
        "samples": 0,
        "calls": 1,
        "cost": 0.0,
        "latency_s": latency,
        "scores": {},
    }


@pytest.fixture
def dataset(tmp_path):
    return _jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "q1", "question": "Who wrote Emma?", "answers": ["Austen"], "context": "Emma."},
            {"id": "q2", "question": "Capital of France?", "answers": ["Paris"]},
        ],
    )


def _run(folder, model, correct, dataset=None):
    folder.mkdir()
    settings = {"model": model, "estimators": []}
    if dataset is not None:
        settings["dataset"] = str(dataset)
    (folder / "run.json").write_text(json.dumps(settings))
    _jsonl(
        folder / "results.jsonl",
        [
            _eval_row("q1", "Who wrote Emma?", model, correct[0]),
            _eval_row("q2", "Capital of France?", model, correct[1]),
            {**_eval_row("q3", "Unanswered?", model, None), "response": None},
        ],
    )
    return folder


def test_eval_runs_are_joined_by_question_with_passages_from_their_dataset(tmp_path, dataset):
    weak = _run(tmp_path / "weak", "weak", [False, True], dataset)
    strong = _run(tmp_path / "strong", "strong", [True, True], dataset)
    rows = load_routing_rows([weak, strong / "results.jsonl"])
    assert len(rows) == 2  # the ungraded row is left out
    emma = next(r for r in rows if r.question == "Who wrote Emma?")
    assert emma.context == ("Emma.",)
    assert emma.outcomes == {
        "weak": Outcome(correct=False, seconds=1.5),
        "strong": Outcome(correct=True, seconds=1.5),
    }


def test_a_run_without_its_dataset_has_no_passages(tmp_path):
    rows = rows_from_run(_run(tmp_path / "weak", "weak", [True, False]))
    assert [r.context for r in rows] == [(), ()]


def test_a_dataset_option_gives_the_passages(tmp_path, dataset):
    rows = rows_from_run(_run(tmp_path / "weak", "weak", [True, False]), dataset=dataset)
    assert rows[0].context == ("Emma.",)


def test_queue_export_rows_are_graded_by_the_reviewer(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"model": None, "estimators": []}))
    ticket = {
        "question": "Who wrote Emma?",
        "context": ["Emma is a novel by Jane Austen."],
        "answers": ["Jane Austen"],
        "error": None,
        "samples": 0,
        "calls": 0,
        "cost": 0.0,
        "latency_s": 0.0,
        "scores": {},
        "ticket_id": "t1",
        "resolution": "edit",
        "reviewer": "ann",
        "trace_id": None,
    }
    _jsonl(
        folder / "results.jsonl",
        [
            {**ticket, "id": "t1/0", "response": "Brontë", "correct": False, "model": "weak"},
            {**ticket, "id": "t1/1", "response": "Austen", "correct": True, "model": "strong"},
        ],
    )
    (row,) = load_routing_rows([folder])
    assert row.context == ("Emma is a novel by Jane Austen.",)
    assert row.outcomes == {
        "weak": Outcome(correct=False, seconds=None),
        "strong": Outcome(correct=True, seconds=None),
    }


def test_records_with_every_model_on_one_line(tmp_path):
    path = _jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "row": 7,
                "question": "Who wrote Emma?",
                "context": "Emma is a novel.",
                "weak": {"correct": False, "seconds": 1.2, "answer": "Brontë"},
                "strong": {"correct": True, "accepted": False, "seconds": 3.4},
            },
            {"question": "Capital of France?", "weak": {"correct": True}},
        ],
    )
    first, second = load_routing_rows([path])
    assert first.context == ("Emma is a novel.",)
    assert first.outcomes["weak"] == Outcome(correct=False, seconds=1.2)
    assert first.outcomes["strong"] == Outcome(correct=True, accepted=False, seconds=3.4)
    assert not first.outcomes["strong"].success  # correct, but the check refused it
    assert second.outcomes == {"weak": Outcome(correct=True)}
    assert rows_from_records(path) == [first, second]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"row": 3, "weak": {"correct": True}}, "line 1: 'question' is missing"),
        ({"question": "q"}, "line 1: no model outcome"),
        ({"question": "q", "weak": {"correct": "yes"}}, "model 'weak': 'correct' must be true"),
        (
            {"question": "q", "weak": {"correct": True, "accepted": 1}},
            "'accepted' must be true, false or absent",
        ),
        ({"question": "q", "context": 5, "weak": {"correct": True}}, "'context' must be a string"),
    ],
)
def test_bad_records_name_the_line_and_field(tmp_path, record, message):
    path = _jsonl(tmp_path / "records.jsonl", [record])
    with pytest.raises(ConfigError, match=message):
        load_routing_rows([path])


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_routing_rows([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="no rows given"):
        load_routing_rows([])
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2, is not JSON"):
        load_routing_rows([tmp_path / "bad.jsonl"])


def test_merge_keeps_a_second_answer_of_the_same_model_as_another_row():
    rows = merge_rows(
        [
            RoutingRow("q", (), {"weak": Outcome(correct=True)}),
            RoutingRow("q", (), {"strong": Outcome(correct=True)}),
            RoutingRow("q", (), {"weak": Outcome(correct=False)}),
            RoutingRow("q", ("p",), {"weak": Outcome(correct=False)}),
        ]
    )
    assert [sorted(r.outcomes) for r in rows] == [["strong", "weak"], ["weak"], ["weak"]]
    assert records_to_rows([{"question": "q", "weak": {"correct": True}}])[0].question == "q"


def _logged_routes(path, capture_content):
    from demur import Abstain, Escalate, Ladder, MeanTokenLogprob, Query, Router
    from demur.routelog import LoggedRouter, RouteLog
    from demur.testing import Reply, ScriptedModel

    log = RouteLog(path, capture_content=capture_content)
    router = LoggedRouter(
        Router(
            [
                ScriptedModel("weak", [Reply.confident("Lyon", 0.3)]),
                ScriptedModel("strong", [Reply.confident("Paris", 0.9)]),
            ],
            estimators=[MeanTokenLogprob()],
            policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain()]),
        ),
        log,
    )
    router.route(Query("Capital of France?", context=("France's capital is Paris.",), id="q1"))
    log.record_outcome("q1", True, source="spot_check")
    log.close()


def test_a_route_log_kept_with_its_text(tmp_path):
    path = tmp_path / "routes.jsonl"
    _logged_routes(path, capture_content=True)
    (row,) = load_routing_rows([path])
    assert row.question == "Capital of France?"
    assert row.context == ("France's capital is Paris.",)
    assert row.outcomes["strong"].correct and row.outcomes["strong"].success


def test_a_route_log_with_hashed_text_is_refused(tmp_path):
    path = tmp_path / "routes.jsonl"
    _logged_routes(path, capture_content=False)
    with pytest.raises(ConfigError, match="kept as hashes.*capture_content=True"):
        load_routing_rows([path])

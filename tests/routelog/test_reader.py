"""Reading a route log back: outcomes joined to routes by any of their ids, labelled rows, the
predictor's per-question records, and route logs as `demur eval` datasets."""

from __future__ import annotations

import json

import pytest

from demur import ConfigError, Query, RouteLog
from demur.evaluation import load_dataset
from demur.routelog import RouteLogReader, is_route_log
from tests.routelog.helpers import verdict


@pytest.fixture
def log(tmp_path):
    with RouteLog(tmp_path / "routes.jsonl", capture_content=True) as log:
        yield log


def test_an_outcome_names_its_route_by_any_id_and_the_last_one_counts(log):
    accepted = log.record(Query("Q1", id="query-1"), verdict(0.9, text="A1"))
    declined = log.record(Query("Q2", id="query-2"), verdict(0.2, text="A2"))
    log.record_outcome("query-1", True, source="spot_check")
    log.record_outcome(declined, True)
    log.record_outcome(accepted, False, source="human")  # a later correction
    log.record_outcome("no-such-route", True)
    reader = RouteLogReader(log.path)
    rows = reader.labelled_rows()
    assert [(r["route_id"], r["correct"], r["source"], r["accepted"]) for r in rows] == [
        (accepted, False, "human", True),
        (declined, True, "human", False),
    ]
    assert reader.orphan_outcomes == 1
    first = rows[0]
    assert (first["question"], first["response"], first["model"]) == ("Q1", "A1", "m")
    assert first["scores"]["mean_logprob"]["confidence"] == 0.9
    assert [r["route_id"] for r in reader.labelled_rows(last=1)] == [declined]
    assert [r["route_id"] for r in reader.labelled_rows(sources=["spot_check"])] == [accepted]
    assert reader.labelled_rows(model="other") == []


def test_question_records_are_what_the_predictor_reads(log):
    route_id = log.record(Query("Q1", context=("P",)), verdict(0.9, text="A1"))
    log.record_outcome(route_id, False, source="spot_check")
    [record] = RouteLogReader(log.path).question_records()
    assert record["question"] == "Q1" and record["context"] == ["P"]
    assert record["m"]["correct"] is False and record["m"]["accepted"] is True


def test_only_route_logs_are_recognised(tmp_path, log):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(json.dumps({"question": "Q", "answers": ["A"]}) + "\n")
    log.record("Q", verdict(0.9))
    assert is_route_log(log.path) and not is_route_log(dataset)
    assert not is_route_log(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        RouteLogReader(tmp_path / "missing.jsonl")


def test_load_dataset_reads_a_route_log_as_labelled_logged_answers(log):
    route_id = log.record(Query("Q1"), verdict(0.9, text="A1"))
    log.record("Q2", verdict(0.9))  # no outcome yet: not a row
    log.record_outcome(route_id, True, source="spot_check")
    dataset = load_dataset(log.path)
    [item] = dataset.items
    assert (item.question, item.response, item.label) == ("Q1", "A1", True)
    assert item.logprobs == (pytest.approx(-0.1054, abs=1e-4),)
    assert dataset.has_responses


def test_a_route_log_without_outcomes_is_not_a_dataset(log):
    log.record("Q1", verdict(0.9))
    with pytest.raises(ConfigError, match="no answer with an outcome yet"):
        load_dataset(log.path)

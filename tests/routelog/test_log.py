"""RouteLog on real files: what a record keeps, redaction, outcomes, rotation, retention, crashes
and threads."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from demur import ConfigError, Query, RouteLog
from demur.routelog import RouteLogReader, hash_text, log_files
from tests.routelog.helpers import verdict


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_route_record_keeps_steps_scores_and_verdict_with_text_hashed(tmp_path):
    log = RouteLog(tmp_path / "routes.jsonl")
    query = Query("Who wrote Emma?", context=("Emma is a novel.",), id="q1", metadata={"u": 1})
    route_id = log.record(query, verdict(0.8, text="Jane Austen"))
    log.close()
    [record] = lines(tmp_path / "routes.jsonl")
    assert record["kind"] == "demur.route" and record["id"] == route_id
    assert record["query"] == {
        "id": "q1",
        "question": hash_text("Who wrote Emma?"),
        "context": [hash_text("Emma is a novel.")],
    }
    [step] = record["steps"]
    assert step["answer"] == hash_text("Jane Austen") == record["verdict"]["answer"]
    assert step["scores"]["mean_logprob"]["confidence"] == 0.8
    assert step["decision"]["action"] == "accept"
    assert step["logprobs"] == [pytest.approx(-0.2231, abs=1e-4)]
    assert record["verdict"]["status"] == "answered" and record["verdict"]["step"] == 0
    assert "Jane" not in (tmp_path / "routes.jsonl").read_text()


def test_captured_content_passes_through_redact_and_logprobs_can_be_left_out(tmp_path):
    log = RouteLog(
        tmp_path / "routes.jsonl",
        capture_content=True,
        redact=lambda text: text.replace("Emma", "[title]"),
        capture_logprobs=False,
    )
    log.record(Query("Who wrote Emma?", metadata={"tenant": "a"}), verdict(0.8))
    log.close()
    [record] = lines(tmp_path / "routes.jsonl")
    assert record["query"]["question"] == "Who wrote [title]?"
    assert record["query"]["metadata"] == {"tenant": "a"}
    assert record["verdict"]["answer"] == "Paris"
    assert "logprobs" not in record["steps"][0]


def test_outcomes_are_appended_and_checked(tmp_path):
    log = RouteLog(tmp_path / "routes.jsonl")
    route_id = log.record("Who wrote Emma?", verdict(0.8))
    log.record_outcome(route_id, False, source="spot_check")
    with pytest.raises(ConfigError, match="source must be one of human, spot_check"):
        log.record_outcome(route_id, True, source="user")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="correct must be True or False"):
        log.record_outcome(route_id, 1)  # type: ignore[arg-type]
    log.close()
    outcome = lines(tmp_path / "routes.jsonl")[1]
    assert outcome["kind"] == "demur.outcome"
    assert (outcome["route_id"], outcome["correct"], outcome["source"]) == (
        route_id,
        False,
        "spot_check",
    )


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="max_age_days must be > 0"):
        RouteLog("x.jsonl", max_age_days=0)
    with pytest.raises(ConfigError, match="max_records must be >= 1"):
        RouteLog("x.jsonl", max_records=0)


def test_each_day_rotates_to_a_dated_file_and_old_files_are_deleted(tmp_path):
    clock = Clock(datetime(2025, 1, 1, 23, 0, tzinfo=UTC))
    active = tmp_path / "routes.jsonl"
    log = RouteLog(active, max_age_days=2, clock=clock)
    first = log.record("day one", verdict(0.8))
    clock.now += timedelta(hours=2)  # 2025-01-02
    log.record("day two", verdict(0.8))
    log.record_outcome(first, True)  # an outcome joins its route across files
    rotated = tmp_path / "routes.2025-01-01.jsonl"
    assert [p.name for p in log_files(active)] == [rotated.name, "routes.jsonl"]
    assert RouteLogReader(active).labelled_rows()[0]["route_id"] == first
    # Three days later the first file is past its age and goes at the next rotation.
    old = (clock.now - timedelta(days=3)).timestamp()
    os.utime(rotated, (old, old))
    clock.now += timedelta(days=1)
    log.record("day three", verdict(0.8))
    log.close()
    assert [p.name for p in log_files(active)] == ["routes.2025-01-02.jsonl", "routes.jsonl"]


def test_max_records_deletes_the_oldest_files(tmp_path):
    active = tmp_path / "routes.jsonl"
    log = RouteLog(active, max_records=6, rotate_records=2, rotate_daily=False)
    for i in range(10):
        log.record(Query(f"q{i}", id=f"q{i}"), verdict(0.8))
    log.close()
    kept = [r["query"]["id"] for r in RouteLogReader(active).records()]
    assert kept == [f"q{i}" for i in range(2, 10)]  # 6 rotated + the active file's 2
    assert len(log_files(active)) == 4
    assert log.rotate() is not None  # the active file's 2 records move to a dated file...
    assert len(log_files(active)) == 3  # ...and the oldest goes: 6 records are kept
    assert log.prune() == []


def test_a_line_cut_off_by_a_crash_is_skipped_and_the_log_goes_on(tmp_path):
    active = tmp_path / "routes.jsonl"
    with RouteLog(active) as log:
        log.record(Query("before", id="a"), verdict(0.8))
    with active.open("a") as file:
        file.write('{"kind": "demur.route", "v": 1, "id": "cut')  # no newline: a crash
    with RouteLog(active) as log:
        log.record(Query("after", id="b"), verdict(0.8))
    reader = RouteLogReader(active)
    assert [r["query"]["id"] for r in reader.records()] == ["a", "b"]
    assert reader.skipped_lines == 1


def test_threads_write_whole_lines(tmp_path):
    active = tmp_path / "routes.jsonl"
    log = RouteLog(active)

    def write(worker: int) -> None:
        for i in range(50):
            route_id = log.record(Query(f"{worker}-{i}"), verdict(0.8))
            log.record_outcome(route_id, True, source="spot_check")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    reader = RouteLogReader(active)
    assert len(reader.labelled_rows()) == 400 and reader.skipped_lines == 0


def test_the_config_section_builds_the_log(tmp_path):
    from demur.config import parse_config

    config = parse_config(
        {
            "models": {"m": {"kind": "scripted", "replies": ["Paris"]}},
            "policy": {"threshold": 0.5},
            "route_log": {"path": str(tmp_path / "r.jsonl"), "max_records": 100},
        }
    )
    assert config.route_log is not None
    log = config.route_log.build()
    assert (log.path, log.max_records, log.rotate_records) == (tmp_path / "r.jsonl", 100, 10)
    assert not log.capture_content and config.drift.alpha == 0.1

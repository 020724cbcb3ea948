"""Replaying a route log through the monitor, refitting on its recent window, and the
`demur drift` and `demur eval` commands on real log files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from demur import CalibrationBundle, ConfigError, DriftMonitor
from demur.cli import main
from demur.drift import refit_from_log, replay_log
from tests.routelog.helpers import simulated_log


# The logs are only read: one of each serves every test.
@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    return simulated_log(tmp_path_factory.mktemp("logs") / "steady.jsonl", 1500, seed=3).path


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "shifted.jsonl"
    return simulated_log(path, 1500, seed=4, error=0.05, shifted_error=0.4, shift_at=750).path


def test_replay_alarms_only_after_the_shift(steady, shifted):
    calm = replay_log(steady, DriftMonitor(0.1))
    assert calm.alarms == ()
    state = calm.state
    assert state.routes == 1500 and 0.4 < state.acceptance_rate < 0.6
    assert state.error_rate < 0.1
    # Reviews of declined answers feed the calibration curve, not the error.
    assert any(b.count for b in state.calibration if b.high <= 0.5)
    report = replay_log(shifted, DriftMonitor(0.1))
    first = report.alarms[0]
    assert first.route_id.isalnum() and first.alarm.route > 750
    assert report.to_dict()["alarms"][0]["route"] == first.alarm.route


def test_replay_since_leaves_out_older_routes(shifted):
    later = datetime.now(UTC) + timedelta(days=1)
    report = replay_log(shifted, DriftMonitor(0.1), since=later)
    assert report.state.routes == 0 and report.alarms == ()
    only_spot_checks = replay_log(shifted, DriftMonitor(0.1), sources=["spot_check"])
    assert not any(b.count for b in only_spot_checks.state.calibration if b.high <= 0.5)


def test_refit_uses_the_most_recent_labelled_answers(steady):
    bundle, report = refit_from_log(steady, window=600, alpha=0.2, delta=0.1)
    assert report["window_rows"] == 600 and bundle.estimators == ("mean_logprob",)
    assert bundle.conformal is not None and bundle.conformal.alpha == 0.2
    with pytest.raises(ConfigError, match="no labelled answers of model 'other'"):
        refit_from_log(steady, window=600, model="other")


def test_drift_check_command(steady, shifted, capsys):
    assert main(["drift", "check", str(steady)]) == 0
    out = capsys.readouterr().out
    assert "no alarm" in out and "calibration of the last judged answers" in out
    assert main(["drift", "check", str(shifted), "--alpha", "0.1", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["alarms"] and data["settings"]["alpha"] == 0.1
    assert main(["drift", "check", str(shifted), "--delta", "2"]) == 2
    assert "--delta 2.0: input should be less than 1" in capsys.readouterr().err


def test_drift_check_reads_the_configs_log_and_settings(tmp_path, shifted, capsys):
    config = tmp_path / "demur.yaml"
    config.write_text(
        "models: {m: {kind: scripted, replies: [Paris]}}\n"
        "policy: {threshold: 0.5}\n"
        f"route_log: {{path: {json.dumps(str(shifted))}}}\n"
        "drift: {alpha: 0.45}\n"
    )
    assert main(["drift", "check", "--config", str(config)]) == 0  # 40% error is within 45%
    assert "alpha 0.45" in capsys.readouterr().out
    assert main(["drift", "check"]) == 2
    assert "no route log: pass its path" in capsys.readouterr().err


def test_drift_refit_command_writes_a_calibration_file(tmp_path, steady, capsys):
    out = tmp_path / "calibration.json"
    args = ["drift", "refit", str(steady), "--window", "600", "--alpha", "0.2", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "refitted on the 600 most recent labelled answers" in printed
    assert "demur drift check" in printed and "--since" in printed
    bundle = CalibrationBundle.load(out)
    assert bundle.conformal is not None and bundle.estimators == ("mean_logprob",)
    again = tmp_path / "again.json"
    assert (
        main(["drift", "refit", str(steady), "--calibration", str(out), "--out", str(again)]) == 0
    )
    assert main(["drift", "refit", str(steady), "--no-conformal", "--out", str(again)]) == 0
    assert CalibrationBundle.load(again).conformal is None


def test_eval_reads_a_route_log(tmp_path, steady, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(steady), "--estimators", "mean_logprob", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) > 1000 and all(r["graded_by"] == "label" for r in rows)
    assert main(["calibrate", str(out), "--alpha", "0.2", "--out", str(tmp_path / "c.json")]) == 0

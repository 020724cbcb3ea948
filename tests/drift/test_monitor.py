"""DriftMonitor: the sequential test's false alarms and detection, the windows, the calibration
curve, and what an alarm emits (callback, log event, metrics)."""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from demur import ConfigError, DriftMonitor
from tests.routelog.helpers import verdict


def feed(monitor: DriftMonitor, errors: list[bool]) -> list[int]:
    """Feed accepted outcomes; the outcome numbers at which the monitor alarmed."""
    return [
        alarm.outcome
        for error in errors
        if (alarm := monitor.observe_outcome(not error, confidence=0.9)) is not None
    ]


def bernoulli(rng: random.Random, p: float, n: int) -> list[bool]:
    return [rng.random() < p for _ in range(n)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in"),
        ({"delta": 1.0}, "delta must be in"),
        ({"alpha": 0.6, "margin": 0.5}, "margin must be > 0 with alpha \\+ margin < 1"),
        ({"window": 0}, "window must be a whole number >= 1"),
    ],
)
def test_settings_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        DriftMonitor(**options)


def test_a_stationary_stream_at_alpha_rarely_alarms():
    # 200 streams of 2,000 outcomes at exactly alpha; the bound allows delta = 5% of them.
    rng = random.Random(7)
    alarmed = 0
    for _ in range(200):
        monitor = DriftMonitor(0.1, delta=0.05, horizon=2000)
        alarmed += bool(feed(monitor, bernoulli(rng, 0.1, 2000)))
    assert alarmed <= 4  # 2%: the union bound over restarts is loose


def test_below_alpha_a_long_stream_does_not_alarm():
    monitor = DriftMonitor(0.1)
    assert feed(monitor, bernoulli(random.Random(0), 0.07, 20_000)) == []
    assert monitor.statistic < monitor.threshold and not monitor.alarmed


def test_a_shift_halfway_alarms_soon_after_and_says_where_it_began():
    rng = random.Random(1)
    monitor = DriftMonitor(0.1, delta=0.05)
    alarms = feed(monitor, bernoulli(rng, 0.05, 1000) + bernoulli(rng, 0.3, 1000))
    assert alarms and 1000 < alarms[0] < 1200
    first = monitor.alarms[0]
    assert 950 <= first.since <= 1050 and first.error_since > 0.2
    assert len(alarms) > 1  # a shift that persists alarms again after each restart
    monitor.reset()
    assert not monitor.alarmed and monitor.outcomes == 0 and monitor.statistic == 0.0


def test_detectable_error_lies_between_alpha_and_alpha_plus_margin():
    monitor = DriftMonitor(0.1, margin=0.1)
    assert 0.1 < monitor.detectable_error < 0.15


def test_windows_and_the_calibration_curve():
    monitor = DriftMonitor(0.1, window=4, bins=2)
    for status in ("abstained", "answered", "answered", "answered", "answered"):
        monitor.observe_verdict(verdict(0.9 if status == "answered" else 0.1))
    for correct, confidence, accepted in [
        (True, 0.9, True),
        (False, 0.8, True),
        (True, 0.7, True),
        (False, 0.2, False),  # a declined answer's review: calibration only
    ]:
        monitor.observe_outcome(correct, confidence=confidence, accepted=accepted)
    state = monitor.state()
    assert (state.routes, state.accepted, state.window_routes) == (5, 4, 4)
    assert state.acceptance_rate == 1.0  # the last 4 routes were all answered
    assert (state.outcomes, state.window_outcomes) == (3, 3)
    assert state.error_rate == pytest.approx(1 / 3)
    low, high = state.calibration
    assert (low.count, low.accuracy) == (1, 0.0)
    assert (high.count, high.mean_confidence, high.accuracy) == (3, pytest.approx(0.8), 2 / 3)
    assert state.ece == pytest.approx((1 * 0.2 + 3 * abs(2 / 3 - 0.8)) / 4)
    assert state.to_dict()["calibration"][1]["count"] == 3


def test_an_alarm_calls_back_logs_and_counts(caplog):
    reader = InMemoryMetricReader()
    seen = []
    monitor = DriftMonitor(
        0.1,
        margin=0.1,  # an error adds log 2
        horizon=3,
        delta=0.5,
        on_alarm=seen.append,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    with caplog.at_level(logging.WARNING, logger="demur.drift"):
        alarms = feed(monitor, [True] * 5)
    assert alarms == [3] and seen == monitor.alarms  # 3 errors (3 log 2) reach log(3 / 0.5)
    [record] = [r for r in caplog.records if r.name == "demur.drift"]
    assert "above alpha=0.1" in record.getMessage()
    assert getattr(record, "demur.drift.errors_since") == 3
    points = {
        metric.name: metric.data.data_points[0].value
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points["demur.drift.alarm"] == 1
    assert points["demur.drift.error_rate"] == 1.0


def test_a_failing_callback_does_not_stop_the_monitor(caplog):
    def broken(alarm):
        raise RuntimeError("pager down")

    monitor = DriftMonitor(0.1, margin=0.1, horizon=3, delta=0.5, on_alarm=broken)
    with caplog.at_level(logging.ERROR, logger="demur.drift"):
        assert feed(monitor, [True] * 3) == [3]
    assert "on_alarm callback failed" in caplog.text

"""Replaying a route log through a `DriftMonitor`: where would it have alarmed?"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demur.drift.monitor import DriftAlarm, DriftMonitor, DriftState
from demur.routelog.reader import RouteLogReader, graded_step, is_accepted


@dataclass(frozen=True)
class AlarmPoint:
    """An alarm, with the outcome record that set it off."""

    alarm: DriftAlarm
    route_id: str
    time: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.alarm.to_dict(), "route_id": self.route_id, "time": self.time}


@dataclass(frozen=True)
class DriftReport:
    """What a replay found: the monitor's final state and every alarm on the way."""

    state: DriftState
    alarms: tuple[AlarmPoint, ...]
    skipped_lines: int = 0
    orphan_outcomes: int = 0
    repeated_outcomes: int = 0

    def to_dict(self) -> dict[str, Any]:
        state = self.state.to_dict()
        state.pop("alarms")
        return {
            "state": state,
            "alarms": [point.to_dict() for point in self.alarms],
            "skipped_lines": self.skipped_lines,
            "orphan_outcomes": self.orphan_outcomes,
            "repeated_outcomes": self.repeated_outcomes,
        }


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def replay_log(
    path: str | Path,
    monitor: DriftMonitor,
    *,
    sources: Collection[str] | None = None,
    since: datetime | None = None,
) -> DriftReport:
    """Feed the log's routes and outcomes to `monitor` in the order they were written.

    Only the first outcome of an answer counts (a monitor cannot take one back); `sources`
    keeps only outcomes from those sources ("human", "spot_check"); `since` leaves out routes
    from before then (and their outcomes), e.g. those answered before a refit.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    reader = RouteLogReader(path)
    points: list[AlarmPoint] = []
    judged: set[tuple[str, int]] = set()
    repeated = 0
    for event in reader.events():
        route, outcome = event.route, event.outcome
        if since is not None and _moment(route["time"]) < since:
            continue
        if outcome is None:
            monitor.observe_route(route.get("verdict", {}).get("status") == "answered")
            continue
        if sources is not None and outcome.get("source") not in sources:
            continue
        step = graded_step(route, outcome.get("step"))
        if step is None:
            continue
        key = (str(route["id"]), int(step["index"]))
        if key in judged:
            repeated += 1
            continue
        judged.add(key)
        alarm = monitor.observe_outcome(
            outcome["correct"], confidence=step.get("confidence"), accepted=is_accepted(route, step)
        )
        if alarm is not None:
            points.append(AlarmPoint(alarm, key[0], outcome.get("time")))
    return DriftReport(
        state=monitor.state(),
        alarms=tuple(points),
        skipped_lines=reader.skipped_lines,
        orphan_outcomes=reader.orphan_outcomes,
        repeated_outcomes=repeated,
    )


__all__ = ["AlarmPoint", "DriftReport", "replay_log"]

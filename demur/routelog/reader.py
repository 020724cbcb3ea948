"""Reading a route log back: its records in order, routes joined with their outcomes, and
labelled rows shaped like `demur eval` rows (`question`, `response`, `correct`, `scores`).

An outcome names its route by the id `RouteLog.record` returned, or by the route's trace id,
query id or ticket id. It grades the answer the route returned, or its `step`'s answer; when a
route has several outcomes for one answer, the last one counts.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demur.errors import ConfigError
from demur.routelog.files import log_files
from demur.routelog.records import OUTCOME, ROUTE


@dataclass(frozen=True)
class LogEvent:
    """A route as it was logged (`outcome` None), or a later outcome with its route."""

    route: dict[str, Any]
    outcome: dict[str, Any] | None = None


def graded_step(route: dict[str, Any], step: int | None = None) -> dict[str, Any] | None:
    """The step an outcome grades: `step`, else the answer the route returned, else its last
    step with an answer (None when the route has no such step)."""
    steps = route.get("steps") or []
    if step is None:
        step = route.get("verdict", {}).get("step")
    if step is not None:
        return next((s for s in steps if s.get("index") == step), None)
    return next((s for s in reversed(steps) if s.get("answer") is not None), None)


def is_accepted(route: dict[str, Any], step: dict[str, Any]) -> bool:
    """Whether `step`'s answer is the one the route returned to the user."""
    verdict: dict[str, Any] = route.get("verdict", {})
    return bool(verdict.get("status") == "answered" and verdict.get("step") == step.get("index"))


def is_route_log(path: str | Path) -> bool:
    """Whether `path` holds route-log records (judged by its first record)."""
    for file in log_files(path):
        with file.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        return False
                    return isinstance(first, dict) and first.get("kind") in (ROUTE, OUTCOME)
    return False


def _aliases(route: dict[str, Any]) -> list[str]:
    names = [route.get("id"), route.get("trace_id"), route.get("query", {}).get("id")]
    names.append(route.get("verdict", {}).get("ticket_id"))
    return [str(name) for name in names if name]


class RouteLogReader:
    """Reads the log whose active file is `path`, rotated files included, oldest first.

    `skipped_lines` counts lines that were not records (a line cut off by a crash);
    `orphan_outcomes` counts outcomes whose route is not in the log (deleted by retention).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped_lines = 0
        self.orphan_outcomes = 0
        if not log_files(self.path):
            raise ConfigError(
                f"route log {self.path} does not exist; write one with demur.RouteLog, or pass "
                "the path of its active file (e.g. .demur/routes.jsonl)"
            )

    def records(self) -> Iterator[dict[str, Any]]:
        """Every route and outcome record, in the order they were written."""
        self.skipped_lines = 0
        for file in log_files(self.path):
            with file.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        self.skipped_lines += 1
                        continue
                    if isinstance(record, dict) and record.get("kind") in (ROUTE, OUTCOME):
                        yield record
                    else:
                        self.skipped_lines += 1

    def events(self) -> Iterator[LogEvent]:
        """Routes and outcomes in the order they arrived, each outcome joined to its route."""
        self.orphan_outcomes = 0
        routes: dict[str, dict[str, Any]] = {}
        for record in self.records():
            if record["kind"] == ROUTE:
                for alias in _aliases(record):
                    routes[alias] = record
                yield LogEvent(record)
                continue
            route = routes.get(str(record.get("route_id")))
            if route is None or not isinstance(record.get("correct"), bool):
                self.orphan_outcomes += 1
                continue
            yield LogEvent(route, record)

    def labelled_rows(
        self,
        *,
        sources: Collection[str] | None = None,
        model: str | None = None,
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        """One row per graded answer, oldest route first (the `last` newest when given).

        Rows look like `demur eval` rows, so `demur calibrate` and `fit_bundle` read them:
        `question`, `context`, `response`, `correct`, `model`, `scores`, plus where the label
        came from (`source`), whether the answer was `accepted`, and the route's ids.
        """
        order: list[str] = []
        graded: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        for event in self.events():
            outcome = event.outcome
            if outcome is None or (sources is not None and outcome.get("source") not in sources):
                continue
            step = graded_step(event.route, outcome.get("step"))
            if step is None or step.get("answer") is None:
                continue
            if model is not None and step.get("model") != model:
                continue
            key = f"{event.route['id']}/{step['index']}"
            if key not in graded:
                order.append(key)
            graded[key] = (event.route, step, outcome)  # a later outcome corrects an earlier
        order.sort(key=lambda key: graded[key][0]["time"])
        if last is not None:
            order = order[-last:] if last > 0 else []
        return [_row(key, *graded[key]) for key in order]

    def question_records(self, *, sources: Collection[str] | None = None) -> list[dict[str, Any]]:
        """One record per route with a labelled answer, each graded model's outcome under its
        name, as the pre-generation predictor's per-question records:

            {"id": ..., "question": ..., "context": [...],
             "weak": {"correct": false, "accepted": false, "seconds": 1.2}, ...}
        """
        records: dict[str, dict[str, Any]] = {}
        for row in self.labelled_rows(sources=sources):
            record = records.setdefault(
                row["route_id"],
                {"id": row["route_id"], "question": row["question"], "context": row["context"]},
            )
            record[row["model"]] = {
                "correct": row["correct"],
                "accepted": row["accepted"],
                "seconds": row["latency_s"],
            }
        return list(records.values())


def _row(
    key: str, route: dict[str, Any], step: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    query = route.get("query", {})
    return {
        "id": key,
        "question": query.get("question"),
        "context": list(query.get("context") or []),
        "response": step.get("answer"),
        "correct": outcome["correct"],
        "source": outcome.get("source"),
        "model": step.get("model"),
        "step": step.get("index"),
        "accepted": is_accepted(route, step),
        "confidence": step.get("confidence"),
        "scores": step.get("scores") or {},
        "logprobs": step.get("logprobs"),
        "latency_s": step.get("latency_s"),
        "route_id": route.get("id"),
        "time": route.get("time"),
        "outcome_time": outcome.get("time"),
        "status": route.get("verdict", {}).get("status"),
        "trace_id": route.get("trace_id"),
        "ticket_id": route.get("verdict", {}).get("ticket_id"),
        "query_id": query.get("id"),
    }


__all__ = ["LogEvent", "RouteLogReader", "graded_step", "is_accepted", "is_route_log"]

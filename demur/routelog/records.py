"""The two records of a route log, as JSON objects (one per line).

    {"kind": "demur.route", "v": 1, "id": "9f2c…", "time": "2025-01-31T12:00:00.123+00:00",
     "trace_id": "…", "query": {"id": null, "question": "sha256:…", "context": ["sha256:…"]},
     "steps": [{"index": 0, "model": "weak", "answer": "sha256:…", "scores": {"mean_logprob":
       {"status": "ok", "value": -0.4, "confidence": 0.67}}, "raw_confidence": 0.67,
       "confidence": 0.67, "calibrated": false, "decision": {"action": "escalate", "reason":
       "…", "threshold": 0.8}, "error": null, "logprobs": [-0.1, -0.7], "documents": []}, …],
     "verdict": {"status": "answered", "answer": "sha256:…", "confidence": 0.91,
       "calibrated": false, "model": "strong", "step": 1, "ticket_id": null},
     "cost": 0.0, "latency_s": 0.8}
    {"kind": "demur.outcome", "v": 1, "route_id": "9f2c…", "time": "…", "correct": true,
     "source": "spot_check", "step": null}

Text (question, passages, answers) is written as `sha256:<16 hex digits>` unless content is
captured, and then after `redact`. The hash lets equal texts be matched, not read back; short
answers can still be guessed by hashing candidates, so pass a `redact` that drops what must not
be kept at all. Token logprobs are numbers only (no token text); a step's error message is
kept only with the content (its type always).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from demur.types import Query, Score, Step, Verdict

ROUTE = "demur.route"
OUTCOME = "demur.outcome"
VERSION = 1

OutcomeSource = Literal["human", "spot_check"]
SOURCES: tuple[OutcomeSource, ...] = ("human", "spot_check")

Redactor = Callable[[str], str]


def hash_text(text: str) -> str:
    """The text as `sha256:<16 hex digits>`: equal texts match, the text is not kept."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _score(score: Score) -> dict[str, Any]:
    return {"status": score.status, "value": score.value, "confidence": score.confidence}


def accepted_step(verdict: Verdict) -> int | None:
    """The index of the step whose answer an answered verdict returned; None otherwise."""
    if verdict.status != "answered" or not verdict.steps:
        return None
    decision = verdict.steps[-1].decision
    chosen = getattr(decision.action, "step", None) if decision is not None else None
    return chosen if chosen is not None else verdict.steps[-1].index


def route_record(
    route_id: str,
    time: str,
    query: Query,
    verdict: Verdict,
    *,
    text: Redactor,
    capture_content: bool,
    capture_logprobs: bool,
) -> dict[str, Any]:
    """The route record of one verdict; `text` turns every question, passage and answer into
    what is written."""

    def maybe(value: str | None) -> str | None:
        return text(value) if value is not None else None

    def step(s: Step) -> dict[str, Any]:
        candidate = s.candidate
        decision = s.decision
        tokens = candidate.tokens if candidate is not None else None
        entry: dict[str, Any] = {
            "index": s.index,
            "model": s.model,
            "answer": maybe(candidate.text) if candidate is not None else None,
            "scores": {score.estimator: _score(score) for score in s.scores},
            "raw_confidence": s.raw_confidence,
            "confidence": s.confidence,
            "calibrated": s.calibrated,
            "decision": None
            if decision is None
            else {
                "action": decision.action.kind,
                "reason": decision.reason,
                "threshold": decision.threshold,
            },
            # An error's message can quote the prompt: kept only with the content.
            "error": text(s.error) if capture_content and s.error else None,
            "error_type": s.error_type,
            "documents": [d.id for d in candidate.documents] if candidate is not None else [],
            "cost": s.cost,
            "latency_s": s.latency_s,
        }
        if capture_logprobs:
            entry["logprobs"] = [t.logprob for t in tokens] if tokens is not None else None
        return entry

    query_entry: dict[str, Any] = {
        "id": query.id,
        "question": text(query.question),
        "context": [text(passage) for passage in query.context],
    }
    if capture_content and query.metadata:
        query_entry["metadata"] = query.metadata
    return {
        "kind": ROUTE,
        "v": VERSION,
        "id": route_id,
        "time": time,
        "trace_id": verdict.trace_id,
        "query": query_entry,
        "steps": [step(s) for s in verdict.steps],
        "verdict": {
            "status": verdict.status,
            "answer": maybe(verdict.answer),
            "confidence": verdict.confidence,
            "calibrated": verdict.calibrated,
            "model": verdict.model,
            "step": accepted_step(verdict),
            "ticket_id": verdict.ticket_id,
        },
        "cost": verdict.cost,
        "latency_s": verdict.latency_s,
    }


def outcome_record(
    route_id: str, time: str, correct: bool, source: OutcomeSource, step: int | None
) -> dict[str, Any]:
    """A later judgement of a route's answer (or of step `step`'s answer)."""
    return {
        "kind": OUTCOME,
        "v": VERSION,
        "route_id": route_id,
        "time": time,
        "correct": correct,
        "source": source,
        "step": step,
    }


__all__ = [
    "OUTCOME",
    "ROUTE",
    "SOURCES",
    "OutcomeSource",
    "Redactor",
    "accepted_step",
    "hash_text",
    "outcome_record",
    "route_record",
]

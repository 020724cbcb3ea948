"""Human verdicts as labelled data: resolved tickets in the rows `demur calibrate` reads.

Each candidate answer of a resolved ticket becomes one row, shaped like a `demur eval` row:

    {"id": "<ticket>/<candidate>", "question": ..., "answers": [<the human answer>],
     "response": <the candidate's text>, "correct": true | false, "model": ...,
     "scores": {"mean_logprob": {"status": "ok", "value": -0.4, "confidence": 0.67}, ...}}

`correct` comes from the reviewer: an approved candidate is correct; after an edit or a
written answer, each candidate is graded against the human answer (demur.correctness, "auto"
by default); after a rejection every candidate is wrong. `export_resolved` writes the rows
and a `run.json` into a folder, so that `demur calibrate FOLDER` refits thresholds on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from demur.correctness import check_grader, grade
from demur.evaluation.runner import RESULTS, SETTINGS, score_entry
from demur.queue.base import CandidateAnswer, ReviewQueue, Ticket


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    tickets: int
    rows: int
    estimators: tuple[str, ...]
    models: tuple[str, ...]


def _scores(candidate: CandidateAnswer) -> dict[str, dict[str, Any]]:
    if candidate.details:
        return {s.estimator: score_entry(s) for s in candidate.details}
    return {
        name: {
            "status": "ok" if confidence is not None else "unavailable",
            "value": None,
            "confidence": confidence,
        }
        for name, confidence in candidate.scores.items()
    }


def _correct(ticket: Ticket, index: int, candidate: CandidateAnswer, grader: str) -> bool:
    if ticket.resolution == "reject" or ticket.answer is None:
        return False
    if ticket.resolution == "approve" and ticket.approved == index:
        return True
    return grade(candidate.text, [ticket.answer], grader)


def ticket_rows(
    tickets: Iterable[Ticket], *, grader: str = "auto", model: str | None = None
) -> Iterator[dict[str, Any]]:
    """One calibration row per candidate answer of each resolved ticket (others are skipped)."""
    check_grader(grader)
    for ticket in tickets:
        if ticket.status != "resolved":
            continue
        for index, candidate in enumerate(ticket.candidates):
            if model is not None and candidate.model != model:
                continue
            yield {
                "id": f"{ticket.id}/{index}",
                "question": ticket.question,
                "context": list(ticket.context),
                "answers": [ticket.answer] if ticket.answer is not None else [],
                "response": candidate.text,
                "correct": _correct(ticket, index, candidate, grader),
                "error": None,
                "model": candidate.model,
                "samples": 0,
                "calls": 0,
                "cost": 0.0,
                "latency_s": 0.0,
                "scores": _scores(candidate),
                "ticket_id": ticket.id,
                "resolution": ticket.resolution,
                "reviewer": ticket.reviewer,
                "trace_id": ticket.trace_id,
            }


def resolved_tickets(
    queue: ReviewQueue, *, since: datetime | None = None, page: int = 500
) -> Iterator[Ticket]:
    """Every resolved ticket, oldest resolution first, read a page at a time."""
    offset = 0
    while True:
        batch = queue.tickets(
            status="resolved", resolved_since=since, order="resolved", limit=page, offset=offset
        )
        yield from batch
        if len(batch) < page:
            return
        offset += len(batch)


def export_resolved(
    queue: ReviewQueue,
    out_dir: str | Path,
    *,
    since: datetime | None = None,
    model: str | None = None,
    grader: str = "auto",
) -> ExportReport:
    """Write resolved tickets as `results.jsonl` and `run.json` in `out_dir` (replacing them).

    The folder is what `demur calibrate` takes: `demur calibrate OUT_DIR --out calib.json`.
    """
    check_grader(grader)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    estimators: dict[str, None] = {}
    models: dict[str, None] = {}
    tickets = rows = 0
    partial = out / (RESULTS + ".partial")
    with partial.open("w", encoding="utf-8") as sink:
        for ticket in resolved_tickets(queue, since=since):
            tickets += 1
            for row in ticket_rows([ticket], grader=grader, model=model):
                rows += 1
                estimators.update(dict.fromkeys(row["scores"]))
                models[row["model"]] = None
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(out / RESULTS)  # a reader never sees half a file
    settings = {
        "model": model or (next(iter(models)) if len(models) == 1 else None),
        "estimators": list(estimators),
        "grader": f"human review ({grader} against the reviewer's answer)",
        "dataset": f"review queue {getattr(queue, 'where', type(queue).__name__)}",
        "since": since.isoformat() if since is not None else None,
    }
    (out / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return ExportReport(
        path=out,
        tickets=tickets,
        rows=rows,
        estimators=tuple(estimators),
        models=tuple(models),
    )


__all__ = ["ExportReport", "export_resolved", "resolved_tickets", "ticket_rows"]

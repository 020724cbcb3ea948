"""Human verdicts into calibration: `demur queue export`, then `demur calibrate` on its output."""

from __future__ import annotations

import json
import random

import pytest

from demur.calibration.bundle import CalibrationBundle
from demur.cli import main
from demur.errors import ConfigError
from demur.evaluation.labels import export_resolved, ticket_rows
from demur.queue import CandidateAnswer, Resolution, TicketRequest
from demur.types import Score


def candidate(model: str, text: str, confidence: float) -> CandidateAnswer:
    return CandidateAnswer(
        model=model,
        text=text,
        confidence=confidence,
        scores={"mean_logprob": confidence},
        details=(
            Score(estimator="mean_logprob", value=confidence - 1, confidence=confidence),
            Score(estimator="verbal", status="failed", detail="no number"),
        ),
    )


def resolve(queue, ticket_id: str, resolution: Resolution) -> None:
    claim = queue.claim("ana", ticket_id=ticket_id)
    queue.resolve(ticket_id, claim.token, resolution)


def test_each_candidate_is_labelled_by_the_human_verdict(queue):
    def ticket(question: str) -> str:
        return queue.enqueue(
            TicketRequest(
                question=question,
                context=("a passage",),
                candidates=(
                    candidate("weak", "Lyon", 0.2),
                    candidate("strong", "It is Paris.", 0.4),
                ),
            )
        ).id

    approved, edited, written, rejected = (ticket(q) for q in ("a", "b", "c", "d"))
    resolve(queue, approved, Resolution.approve(1))
    resolve(queue, edited, Resolution.edit("Paris", candidate=1))
    resolve(queue, written, Resolution.answer("Marseille"))
    resolve(queue, rejected, Resolution.reject())
    ticket("still pending")
    queue.cancel(ticket("cancelled"))

    rows = list(ticket_rows(queue.tickets(limit=100)))
    labels = {row["id"]: row["correct"] for row in rows}
    assert labels == {
        f"{approved}/0": False,  # graded against the approved text
        f"{approved}/1": True,  # the approved candidate
        f"{edited}/0": False,
        f"{edited}/1": True,  # "It is Paris." contains the human's "Paris"
        f"{written}/0": False,
        f"{written}/1": False,
        f"{rejected}/0": False,
        f"{rejected}/1": False,
    }
    row = next(r for r in rows if r["id"] == f"{edited}/1")
    assert row["answers"] == ["Paris"] and row["response"] == "It is Paris."
    assert row["model"] == "strong" and row["context"] == ["a passage"]
    assert row["scores"]["mean_logprob"]["confidence"] == pytest.approx(0.4)
    assert row["scores"]["mean_logprob"]["value"] == pytest.approx(-0.6)
    assert row["scores"]["verbal"]["status"] == "failed"
    assert (row["resolution"], row["reviewer"], row["ticket_id"]) == ("edit", "ana", edited)
    assert next(r for r in rows if r["id"] == f"{rejected}/0")["answers"] == []
    assert [r["id"] for r in ticket_rows(queue.tickets(), model="weak")] == [
        f"{t}/0" for t in (approved, edited, written, rejected)
    ]
    exact = {r["id"]: r["correct"] for r in ticket_rows(queue.tickets(), grader="exact")}
    assert exact[f"{edited}/1"] is False  # "It is Paris." is not exactly "Paris"
    with pytest.raises(ConfigError, match="unknown grader"):
        list(ticket_rows([], grader="fuzzy"))


def test_scores_without_details_still_export(queue):
    plain = CandidateAnswer(model="m", text="Paris", scores={"a": 0.7, "b": None})
    ticket = queue.enqueue(TicketRequest(question="Q?", candidates=(plain,)))
    resolve(queue, ticket.id, Resolution.approve(0))
    (row,) = ticket_rows(queue.tickets())
    assert row["scores"] == {
        "a": {"status": "ok", "value": None, "confidence": 0.7},
        "b": {"status": "unavailable", "value": None, "confidence": None},
    }


def fill(queue, n: int = 160) -> None:
    """Tickets whose candidates are right more often when confident, resolved by a person."""
    rng = random.Random(7)
    for i in range(n):
        confidence = rng.random()
        right = confidence > 0.2 or rng.random() < 0.1  # confident answers are right
        ticket = queue.enqueue(
            TicketRequest(
                question=f"question {i}",
                candidates=(candidate("weak", "Paris" if right else "Lyon", confidence),),
            )
        )
        resolve(queue, ticket.id, Resolution.approve(0) if right else Resolution.answer("Paris"))


@pytest.mark.timeout(120)
def test_export_then_calibrate_end_to_end(store, tmp_path, capsys):
    queue = store.open()
    fill(queue)
    where = (
        ["--queue-path", store.location] if store.kind == "sqlite" else ["--dsn", store.location]
    )
    out = tmp_path / "export"
    assert main(["queue", "export", *where, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "160 rows from 160 resolved tickets (estimators: mean_logprob, verbal)" in said
    assert f"demur calibrate {out}" in said
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 160 and {r["model"] for r in rows} == {"weak"}
    settings = json.loads((out / "run.json").read_text())
    assert settings["estimators"] == ["mean_logprob", "verbal"] and settings["model"] == "weak"

    bundle_path = tmp_path / "calibration.json"
    code = main(["calibrate", str(out), "--estimators", "mean_logprob", "--out", str(bundle_path)])
    assert code == 0, capsys.readouterr().err
    bundle = CalibrationBundle.load(bundle_path)
    assert bundle.estimators == ("mean_logprob",)
    assert bundle.conformal is not None and 0.0 <= bundle.conformal.threshold <= 1.0
    # Without --estimators, calibrate takes them from the export's run.json.
    assert main(["calibrate", str(out), "--no-conformal", "--out", str(bundle_path)]) == 0
    assert CalibrationBundle.load(bundle_path).estimators == ("mean_logprob", "verbal")


def test_export_since_keeps_only_later_resolutions(store, clock, tmp_path):
    queue = store.open(clock=clock)
    fill(queue, 3)
    clock.advance(3600)
    cutoff = clock.now
    fill(queue, 2)
    report = export_resolved(queue, tmp_path / "x", since=cutoff)
    assert (report.tickets, report.rows) == (2, 2)
    assert report.estimators == ("mean_logprob", "verbal")


def test_list_and_stats_commands(store, capsys):
    queue = store.open()
    fill(queue, 2)
    waiting = queue.enqueue(TicketRequest(question="Who painted   the\nMona Lisa?", priority=4))
    where = (
        ["--queue-path", store.location] if store.kind == "sqlite" else ["--dsn", store.location]
    )
    assert main(["queue", "list", *where, "--status", "pending"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert listed[0].startswith(waiting.id) and "p4" in listed[0]
    assert "Who painted the Mona Lisa?" in listed[0]
    assert main(["queue", "list", *where, "--json", "--text", "question 1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["question"] == "question 1"
    assert main(["queue", "stats", *where]) == 0
    said = capsys.readouterr().out
    assert "3 tickets: 1 pending, 0 claimed, 2 resolved, 0 cancelled" in said
    assert main(["queue", "stats", *where, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["resolved"] == 2


def test_the_queue_command_needs_a_queue(tmp_path, capsys):
    assert main(["queue", "stats", "--queue-path", str(tmp_path / "missing.db")]) == 2
    assert "there is no review queue at" in capsys.readouterr().err
    config = tmp_path / "demur.yaml"
    config.write_text(
        "models: {m: {kind: scripted, replies: [hi]}}\npolicy: {kind: ladder, threshold: 0.5, "
        "rungs: [abstain]}\n"
    )
    assert main(["queue", "stats", "--config", str(config)]) == 2
    assert "no 'queue' section" in capsys.readouterr().err
    assert (
        main(["queue", "export", "--queue-path", str(tmp_path / "missing.db"), "--since", "x"]) == 2
    )

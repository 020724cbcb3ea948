"""LoggedRouter over a real Router on scripted models: every route lands in the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from demur import (
    AskHuman,
    Escalate,
    Ladder,
    LoggedRouter,
    MeanTokenLogprob,
    Query,
    Reply,
    RouteLog,
    Router,
    ScriptedModel,
    SqliteQueue,
)
from demur.routelog import RouteLogReader


def make_router(tmp_path, strong_p: float = 0.9) -> Router:
    return Router(
        [
            ScriptedModel("weak", [Reply.confident("Lyon", 0.3)]),
            ScriptedModel("strong", [Reply.confident("Paris", strong_p)]),
        ],
        policy=Ladder(0.6, rungs=(Escalate("strong"), AskHuman())),
        estimators=[MeanTokenLogprob()],
        queue=SqliteQueue(tmp_path / "queue.db"),
    )


def test_route_and_aroute_are_logged_with_every_step(tmp_path):
    log = RouteLog(tmp_path / "routes.jsonl")
    with LoggedRouter(make_router(tmp_path), log) as router:
        verdict = router.route(Query("Capital of France?", id="sync"))
        assert verdict.answer == "Paris"
        asyncio.run(router.aroute(Query("Capital of France?", id="async")))
        assert list(router.models) == ["weak", "strong"]  # the router's own attributes
    log.record_outcome("sync", True, source="spot_check")
    [route, _] = [r for r in RouteLogReader(log.path).records() if r["kind"] == "demur.route"]
    assert [s["model"] for s in route["steps"]] == ["weak", "strong"]
    assert [s["decision"]["action"] for s in route["steps"]] == ["escalate", "accept"]
    assert route["verdict"]["step"] == 1
    [row] = RouteLogReader(log.path).labelled_rows()
    assert (row["query_id"], row["model"], row["accepted"]) == ("sync", "strong", True)


def test_a_pending_route_takes_its_outcome_by_ticket_id(tmp_path):
    log = RouteLog(tmp_path / "routes.jsonl")
    router = LoggedRouter(make_router(tmp_path, strong_p=0.4), log)
    verdict = router.route("Capital of France?")
    assert verdict.status == "pending" and verdict.ticket_id is not None
    # A reviewer found the strong model's answer right after all.
    log.record_outcome(verdict.ticket_id, True, source="human")
    router.close()
    [row] = RouteLogReader(log.path).labelled_rows()
    assert (row["ticket_id"], row["model"], row["accepted"]) == (verdict.ticket_id, "strong", False)


def test_a_log_that_cannot_be_written_does_not_fail_the_route(tmp_path, caplog):
    (tmp_path / "routes.jsonl").mkdir()  # a folder where the file should be
    router = LoggedRouter(make_router(tmp_path), RouteLog(tmp_path / "routes.jsonl"))
    with caplog.at_level(logging.WARNING, logger="demur.routelog"):
        assert router.route("Capital of France?").answer == "Paris"
    assert "could not record a route" in caplog.text
    router.strict = True
    with pytest.raises(OSError):
        router.route("Capital of France?")
    router.close()

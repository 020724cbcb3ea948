"""The demo's runner: which models it compares with, and the questions it is measured on."""

from __future__ import annotations

import json
from pathlib import Path

from demur import (
    Abstain,
    Accept,
    Always,
    AskHuman,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    Reply,
    Router,
    ScriptedModel,
    SqliteQueue,
)
from demur.demo import load_questions, run_demo
from demur.demo.runner import reachable_models

RECORDS = Path(__file__).parents[1] / "benchmarks" / "results" / "ladder-records.jsonl"


def _models() -> list[ScriptedModel]:
    return [
        ScriptedModel("weak", [Reply.confident("Lyon", 0.2)]),
        ScriptedModel("strong", [Reply.confident("Paris", 0.95)]),
    ]


def _strong_then_person(weak: ScriptedModel, strong: ScriptedModel, tmp_path: Path) -> Router:
    """The default config's shape: start at the strong model, hand doubts to a person."""
    return Router(
        [weak, strong],
        start="strong",
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[AskHuman()]),
        queue=SqliteQueue(tmp_path / "q.db"),
    )


def test_a_ladder_that_starts_at_the_strong_model_never_reaches_the_weak_one(tmp_path):
    weak, strong = _models()
    router = _strong_then_person(weak, strong, tmp_path)
    assert reachable_models(router) == ("strong",)


def test_escalation_rungs_are_reached_in_the_routers_order():
    weak, strong = _models()
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[Escalate("strong"), Abstain()]),
    )
    assert reachable_models(router) == ("weak", "strong")


def test_another_policy_may_reach_every_model():
    weak, strong = _models()
    router = Router([weak, strong], estimators=[MeanTokenLogprob()], policy=Always(Accept()))
    assert reachable_models(router) == ("weak", "strong")


async def test_the_demo_does_not_ask_a_model_no_route_reaches(tmp_path):
    weak, strong = _models()
    router = _strong_then_person(weak, strong, tmp_path)
    questions = load_questions(limit=3)
    report = await run_demo(router, questions)
    await router.aclose()
    assert weak.calls == []
    assert report.models == ("strong",)
    summary = report.to_json()
    assert summary["reached"] == {"strong": 3}
    # Every answer is accepted: the gain over always-strong is nil.
    assert summary["gain_over_largest"] == 0.0


def test_no_demo_question_is_among_the_rows_the_thresholds_were_fitted_on():
    fitted = {
        f"halueval-qa-{json.loads(line)['row']}"
        for line in RECORDS.read_text().splitlines()
        if line.strip()
    }
    demo = [q.id for q in load_questions()]
    assert len(fitted) == 1000
    assert len(demo) == len(set(demo)) == 80
    assert not set(demo) & fitted

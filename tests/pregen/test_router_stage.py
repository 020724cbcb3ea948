"""The pre-generation stage, the route log and the drift monitor inside a real Router."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import Abstain, Escalate, Ladder, MeanTokenLogprob, Query, Router
from demur.config import load_router
from demur.pregen import KnnPredictor, Prediction, PreGenerationRouter
from demur.testing import Reply, ScriptedModel
from tests.pregen.conftest import EMBEDDER, TopicEmbedder, topic_rows


class FixedStage:
    """A pre-generation stage that always predicts the same probabilities."""

    def __init__(self, probabilities: dict[str, float | None], ladder: list[str]) -> None:
        self.gate = PreGenerationRouter(ladder, min_success=0.5)
        self.ladder = self.gate.ladder
        self.probabilities = probabilities

    def validate(self, models: Any) -> None:
        self.gate.validate(models)

    async def astart_for(self, query: Query) -> Prediction:
        return self.gate.decide(self.probabilities, predictor="fixed")


def ladder_router(stage: Any, **options: Any) -> tuple[Router, ScriptedModel, ScriptedModel]:
    weak = ScriptedModel("weak", [Reply.confident("Lyon", 0.9)])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Escalate("strong"), Abstain()]),
        pregen=stage,
        **options,
    )
    return router, weak, strong


def test_a_predicted_skip_starts_higher_and_the_verdict_and_trace_say_why() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    stage = FixedStage({"weak": 0.1, "strong": 0.8}, ["weak", "strong"])
    router, weak, strong = ladder_router(stage, tracer_provider=provider)
    verdict = router.route("What is the capital of France?")
    assert weak.calls == [] and len(strong.calls) == 1
    assert [s.model for s in verdict.steps] == ["strong"] and verdict.answer == "Paris"
    assert verdict.start is not None
    assert verdict.start.model == "strong" and verdict.start.skipped == ("weak",)
    assert verdict.start.probabilities == {"weak": 0.1, "strong": 0.8}
    assert "P(weak)=0.10" in verdict.start.reason and verdict.start.predictor == "fixed"
    [root] = [s for s in spans.get_finished_spans() if s.name == "demur.route"]
    assert root.attributes["demur.pregen.start"] == "strong"
    assert root.attributes["demur.pregen.p.weak"] == pytest.approx(0.1)


def test_a_likely_bottom_model_is_asked_first() -> None:
    router, _, strong = ladder_router(FixedStage({"weak": 0.9, "strong": 0.9}, ["weak", "strong"]))
    verdict = router.route("What is the capital of France?")
    assert [s.model for s in verdict.steps] == ["weak"] and strong.calls == []
    assert verdict.start is not None and verdict.start.model == "weak" and not verdict.start.skipped


def test_the_stage_never_starts_below_the_routers_start() -> None:
    stage = FixedStage({"weak": 0.9, "strong": 0.9}, ["weak", "strong"])
    router, weak, _ = ladder_router(stage, start="strong")
    verdict = router.route("What is the capital of France?")
    assert weak.calls == [] and [s.model for s in verdict.steps] == ["strong"]
    assert verdict.start is not None and verdict.start.model == "strong"
    assert verdict.start.reason.startswith("starts at strong")


def test_a_stage_naming_unknown_models_is_refused() -> None:
    from demur.errors import ConfigError

    with pytest.raises(ConfigError, match="strnog"):
        ladder_router(FixedStage({}, ["weak", "strnog"]))


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[str, str]] = []
        self.fail = fail

    def record(self, query: Query, verdict: Any) -> str:
        if self.fail:
            raise OSError("disk full")
        self.seen.append((query.question, verdict.status))
        return "route-1"

    def observe_verdict(self, verdict: Any) -> None:
        if self.fail:
            raise RuntimeError("broken monitor")
        self.seen.append(("drift", verdict.status))


def test_each_verdict_reaches_the_route_log_and_the_drift_monitor() -> None:
    log, drift = Recorder(), Recorder()
    router, _, _ = ladder_router(None, route_log=log, drift=drift)
    verdict = router.route("What is the capital of France?")
    assert log.seen == [("What is the capital of France?", verdict.status)]
    assert drift.seen == [("drift", verdict.status)]


def test_a_failing_route_log_or_monitor_does_not_fail_the_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, _, _ = ladder_router(None, route_log=Recorder(fail=True), drift=Recorder(fail=True))
    verdict = router.route("What is the capital of France?")
    assert verdict.status == "answered"
    messages = [r.getMessage() for r in caplog.records]
    assert any("route log could not record" in m for m in messages)
    assert any("drift monitor could not observe" in m for m in messages)


def test_a_config_runs_a_fitted_predictor_and_logs_routes(
    tmp_path: Path, topic_embedder: TopicEmbedder
) -> None:
    predictor_file = tmp_path / "predictor.json"
    KnnPredictor(EMBEDDER, k=10).fit(topic_rows()).save(predictor_file)
    routes = tmp_path / "routes.jsonl"
    config = tmp_path / "demur.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            models:
              weak: {{kind: scripted, replies: [{{text: Lyon, logprobs: [-0.05]}}]}}
              strong: {{kind: scripted, replies: [{{text: Paris, logprobs: [-0.05]}}]}}
            policy: {{kind: ladder, threshold: 0.5, rungs: [{{escalate: strong}}, abstain]}}
            pregen: {{predictor: {predictor_file}, ladder: [weak, strong]}}
            route_log: {{path: {routes}}}
            drift: {{alpha: 0.1}}
            tracing: {{exporter: none}}
            """
        )
    )
    with load_router(config) as router:
        assert router.pregen is not None and router.drift is not None
        football = router.route("question 3 about football number 21")
        painting = router.route("question 3 about painting number 21")
    assert football.start is not None and football.start.model == "weak"
    assert painting.start is not None and painting.start.model == "strong"
    assert [s.model for s in painting.steps] == ["strong"]
    logged = [json.loads(line) for line in routes.read_text().splitlines()]
    assert len(logged) == 2

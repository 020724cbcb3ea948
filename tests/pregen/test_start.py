import asyncio

import pytest

from demur.errors import ConfigError
from demur.pregen import Prediction, PreGenerationRouter, apply_start

LADDER = ["small", "medium", "large"]


def gate(**options) -> PreGenerationRouter:
    return PreGenerationRouter(LADDER, min_success=0.5, **options)


def test_starts_at_the_cheapest_model_likely_to_succeed():
    prediction = gate(costs={"small": 1, "medium": 2, "large": 5}).decide(
        {"small": 0.2, "medium": 0.7, "large": 0.9}
    )
    assert prediction.start == "medium"
    assert prediction.skipped == ("small",)
    assert prediction.skips and prediction.saved_cost == 1
    assert prediction.reason == (
        "skips small: P(small)=0.20 < 0.50; P(medium)=0.70 >= 0.50: start at medium "
        "(saves 1 cost units)"
    )


def test_no_skip_when_the_bottom_model_is_likely_enough():
    prediction = gate().decide({"small": 0.5, "medium": 0.9, "large": 0.9})
    assert prediction.start == "small" and not prediction.skips
    assert prediction.reason == "P(small)=0.50 >= 0.50: start at small"
    assert prediction.saved_cost is None


def test_goes_to_the_top_when_every_cheaper_model_is_unlikely():
    prediction = gate().decide({"small": 0.1, "medium": 0.3, "large": 0.4})
    assert prediction.start == "large" and prediction.skipped == ("small", "medium")
    assert prediction.reason == (
        "skips small, medium: P(small)=0.10, P(medium)=0.30 < 0.50: start at the top, large"
    )


@pytest.mark.parametrize(
    ("probabilities", "start", "reason"),
    [
        (None, "small", "no prediction: start at small"),
        ({}, "small", "no prediction for small: start there"),
        ({"small": float("nan"), "medium": 0.9}, "small", "no prediction for small"),
        # a missing middle model stops the climb there: it is never skipped unknown
        ({"small": 0.1, "large": 0.9}, "medium", "no prediction for medium: start there"),
        # nothing stronger is predicted to do better: skipping would buy nothing
        ({"small": 0.3, "medium": 0.2, "large": 0.3}, "small", "no stronger model"),
    ],
)
def test_never_skips_when_uncertain(probabilities, start, reason):
    prediction = gate().decide(probabilities)
    assert prediction.start == start
    assert reason in prediction.reason


def test_a_failing_predictor_starts_at_the_bottom_and_says_why():
    class Broken:
        def predict(self, query):
            raise RuntimeError("embedder crashed")

        def describe(self):
            return "broken"

    prediction = gate(predictor=Broken()).start_for("Who wrote Emma?")
    assert prediction.start == "small" and not prediction.skips
    assert prediction.error == "RuntimeError: embedder crashed"
    assert prediction.reason == (
        "the predictor failed (RuntimeError: embedder crashed): start at small"
    )
    assert prediction.predictor == "broken"


def test_start_for_and_astart_for_ask_the_predictor():
    class Fixed:
        def predict(self, query):
            return {"small": 0.1, "medium": 0.8, "large": 0.9}

        def describe(self):
            return "fixed"

    router = gate(predictor=Fixed())
    assert router.start_for("q").start == "medium"
    assert asyncio.run(router.astart_for("q")).start == "medium"
    with pytest.raises(ConfigError, match="needs a predictor"):
        gate().start_for("q")


def test_prediction_as_record_and_span_attributes():
    prediction = gate().decide({"small": 0.1, "medium": 0.8}, predictor="knn(k=5) on m")
    record = prediction.to_dict()
    assert record["start"] == "medium" and record["skipped"] == ["small"]
    assert record["probabilities"] == {"small": 0.1, "medium": 0.8, "large": None}
    attributes = prediction.attributes()
    assert attributes["demur.pregen.start"] == "medium"
    assert attributes["demur.pregen.skipped"] == "small"
    assert attributes["demur.pregen.p.small"] == 0.1
    assert "demur.pregen.p.large" not in attributes
    assert attributes["demur.pregen.predictor"] == "knn(k=5) on m"


class FakeRouter:
    def __init__(self, start: str) -> None:
        self.start = start

    def replace(self, **changes):
        return FakeRouter(changes["start"])


def _prediction(start: str) -> Prediction:
    return Prediction(
        start=start,
        probabilities={},
        skipped=(),
        reason="",
        ladder=tuple(LADDER),
        min_success=0.5,
    )


def test_apply_start_only_moves_up_the_ladder():
    router = FakeRouter("small")
    assert apply_start(router, _prediction("small")) is router
    assert apply_start(router, _prediction("large")).start == "large"
    higher = FakeRouter("medium")
    assert apply_start(higher, _prediction("small")) is higher
    assert apply_start(higher, _prediction("large")).start == "large"
    assert apply_start(router, _prediction("elsewhere")) is router


def test_for_predictor_orders_the_ladder_by_cost():
    class Fitted:
        def __init__(self) -> None:
            self.models = ("large", "small")
            self.costs = {"large": 3.0, "small": 1.0}

    router = PreGenerationRouter.for_predictor(Fitted(), min_success=0.4)
    assert router.ladder == ("small", "large") and router.min_success == 0.4


def test_configuration_mistakes():
    with pytest.raises(ConfigError, match="give the models as a list"):
        PreGenerationRouter("small")
    with pytest.raises(ConfigError, match="a model is repeated"):
        PreGenerationRouter(["a", "a"])
    with pytest.raises(ConfigError, match=r"min_success must be in \(0, 1\]"):
        PreGenerationRouter(["a", "b"], min_success=0)
    with pytest.raises(ConfigError, match="names large, which the router does not have"):
        gate().validate(["small", "medium"])


def test_with_a_real_router_the_skipped_route_still_checks_the_answer():
    from demur import Abstain, Escalate, Ladder, MeanTokenLogprob, Router
    from demur.testing import Reply, ScriptedModel

    weak = ScriptedModel("weak", [Reply.confident("Lyon", 0.9)])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.2)])
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain("not sure")]),
    )
    prediction = PreGenerationRouter(["weak", "strong"]).decide({"weak": 0.1, "strong": 0.8})
    started = apply_start(router, prediction)
    assert started.start == "strong" and router.start == "weak"
    verdict = started.route("What is the capital of France?")
    assert weak.calls == []  # skipped
    assert [step.model for step in verdict.steps] == ["strong"]
    # the strong answer is below the threshold: the check still refuses it
    assert verdict.status == "abstained" and verdict.action == "abstain"

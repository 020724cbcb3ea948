"""Estimator specs: every registered estimator written as data and rebuilt the same."""

from __future__ import annotations

import inspect

import pytest

from demur import ConfigError, LLMJudge, ScriptedModel
from demur.estimators import ESTIMATORS, EstimatorSpec, build_from_spec, estimator_spec
from demur.estimators.registry import build_estimator, estimator_class
from demur.estimators.specs import estimator_specs

# Not a class: `ensemble` loads a file.
BY_FILE = {"ensemble"}
REQUIRED = {"judge": {"judge": "strong"}}


@pytest.mark.parametrize("kind", sorted(set(ESTIMATORS) - BY_FILE))
def test_every_registered_estimator_round_trips_with_every_option(kind: str) -> None:
    estimator = build_estimator(kind, REQUIRED.get(kind))
    spec = estimator_spec(estimator)
    assert spec.kind == kind and spec.name == estimator.name
    accepted = set(inspect.signature(estimator_class(kind)).parameters)
    assert set(spec.options) == accepted
    rebuilt = build_from_spec(spec.model_dump(mode="json"))
    assert type(rebuilt) is type(estimator)
    assert estimator_spec(rebuilt) == spec


def test_a_model_object_is_written_as_its_name():
    judge = LLMJudge(ScriptedModel("strong", ["Yes"]), mode="score")
    spec = estimator_spec(judge)
    assert spec.options["judge"] == "strong" and spec.name == "judge_strong_score"
    assert build_from_spec(spec).name == "judge_strong_score"


def test_an_estimator_of_no_registered_class_has_no_kind_and_cannot_be_rebuilt():
    from demur import MeanTokenLogprob

    class Mine(MeanTokenLogprob):
        name = "mine"

    spec = estimator_spec(Mine())
    assert spec == EstimatorSpec(name="mine")
    with pytest.raises(ConfigError, match="'mine' is not of a registered class"):
        build_from_spec(spec)
    assert estimator_specs([Mine()]) == {"mine": spec}


def test_a_renamed_estimator_comes_back_under_its_name():
    spec = {"name": "agreement_j", "kind": "agreement", "options": {"similarity": "jaccard"}}
    rebuilt = build_from_spec(spec)
    assert rebuilt.name == "agreement_j" and rebuilt.similarity == "jaccard"  # type: ignore[attr-defined]

"""Every registered estimator, and demur's policies and groundings, meet their contracts."""

from __future__ import annotations

import inspect

import pytest

from demur import (
    Abstain,
    Always,
    AskHuman,
    ConfidentRag,
    Escalate,
    FirstOf,
    HandBackOn,
    Ladder,
    Query,
    Rag,
    RetrieveMore,
    RouteState,
    Situated,
    Step,
    Threshold,
)
from demur.estimators.registry import ESTIMATORS, build_estimator, estimator_class
from demur.protocols import Attempt, Model, RouterSpec
from demur.testing import (
    Reply,
    ScriptedModel,
    check_estimator,
    check_grounding,
    check_model,
    check_policy,
)
from demur.types import (
    Branch,
    Candidate,
    Completion,
    Document,
    Generation,
    GenerationRequest,
    TokenAlternative,
    TokenLogprob,
)

ANSWER = "Paris is the capital"
TOKENS = tuple(
    TokenLogprob(
        token=word,
        logprob=-0.1,
        top=(TokenAlternative(token=word, logprob=-0.1), TokenAlternative(token="x", logprob=-2.5)),
    )
    for word in ANSWER.split()
)
SAMPLES = tuple(
    Completion(text=text, tokens=TOKENS)
    for text in ("Paris is the capital", "Paris", "It is Lyon", "Paris is the capital")
)
DOCUMENTS = (
    Document(id="a", text="Paris is the capital of France.", score=0.8),
    Document(id="b", text="Lyon is a city in France.", score=0.5),
)
QUERY = Query("What is the capital of France?", context=tuple(d.text for d in DOCUMENTS))
# Says yes, and 90% when asked how sure it is: every model-asking estimator can read that.
JUDGE = ScriptedModel("judge", lambda request: Reply.confident("Yes 0.9", 0.9))


async def ask(request: GenerationRequest, model: Model | str | None = None) -> Generation:
    return await JUDGE.agenerate(request)


def attempt(*, logprobs: bool = True) -> Attempt:
    candidate = Candidate(
        text=ANSWER,
        model="m",
        tokens=TOKENS if logprobs else None,
        samples=SAMPLES,
        documents=DOCUMENTS,
    )
    return Attempt(query=QUERY, candidate=candidate, caller=ask)


# Estimators that need something the contract attempt cannot give (a fitted file).
NOT_BUILT_BY_NAME = {"ensemble"}


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - NOT_BUILT_BY_NAME))
def test_every_registered_estimator_scores_within_its_contract(name: str) -> None:
    estimator = build_estimator(name, options(name))
    score = check_estimator(estimator, attempt())
    assert score.status == "ok", score


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - NOT_BUILT_BY_NAME))
def test_an_estimator_that_needs_logprobs_reports_unavailable_without_them(name: str) -> None:
    estimator = build_estimator(name, options(name))
    score = check_estimator(estimator, attempt(logprobs=False))
    if estimator.needs.logprobs:
        assert score.status == "unavailable", score
    else:
        assert score.status == "ok", score


def options(name: str) -> dict[str, object]:
    """Options that fit the contract attempt: 4 samples, and a judge where one is required."""
    accepted = inspect.signature(estimator_class(name)).parameters
    chosen: dict[str, object] = {"samples": 4} if "samples" in accepted else {}
    if name == "judge":
        chosen["judge"] = JUDGE
    return chosen


def step(confidence: float | None, model: str = "weak", error_type: str | None = None) -> Step:
    candidate = None if error_type else Candidate(text="x", model=model)
    return Step(
        index=0,
        model=model,
        candidate=candidate,
        confidence=confidence,
        error="failed" if error_type else None,
        error_type=error_type,
    )


STATES = [
    RouteState(query=QUERY, steps=(s,), models=("weak", "strong"), steps_left=left)
    for s in (step(0.9), step(0.2), step(None), step(None, error_type="ServerError"))
    for left in (0, 3)
]
SPEC = RouterSpec(models=("weak", "strong"), retrievers=("minilm-l6", "e5-small"), has_queue=True)


@pytest.mark.parametrize(
    "policy",
    [
        Ladder(0.6, rungs=[RetrieveMore(k=10), Escalate("strong"), AskHuman(), Abstain()]),
        Always(Abstain("no")),
        FirstOf(HandBackOn("ServerError"), Threshold(0.5), Ladder(0.8)),
    ],
    ids=repr,
)
def test_demurs_policies_are_pure_and_valid(policy: object) -> None:
    check_policy(policy, STATES, SPEC)  # type: ignore[arg-type]


BRANCHES = [
    Branch(name="minilm-l6", candidate=Candidate(text="Paris", model="m"), confidence=0.7),
    Branch(name="e5-small", candidate=Candidate(text="Lyon", model="m"), confidence=0.4),
    Branch(name="internal", candidate=Candidate(text="Paris", model="m", tokens=TOKENS)),
    Branch(name="context", candidate=Candidate(text="Paris", model="m", tokens=TOKENS)),
]


@pytest.mark.parametrize("grounding", [Rag(), ConfidentRag(), Situated("rcr")], ids=repr)
def test_demurs_groundings_plan_and_select_purely(grounding: object) -> None:
    check_grounding(grounding, Query("Q?"), ["minilm-l6", "e5-small"], BRANCHES)  # type: ignore[arg-type]


def test_the_scripted_model_meets_the_model_contract() -> None:
    check_model(ScriptedModel("m", ["yes"]))


@pytest.mark.local_model
def test_the_smallest_local_model_meets_the_model_contract() -> None:
    from demur import LlamaCppModel

    check_model(LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=8, timeout_s=180))

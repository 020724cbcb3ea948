"""P(True): the token mass of True over True and False, through scripted and real models."""

from __future__ import annotations

import math

import pytest

from demur import (
    Completion,
    CompletionPrompt,
    EstimatorUnavailable,
    GenerationRequest,
    Ladder,
    Price,
    Query,
    Reply,
    RetryPolicy,
    Router,
    ScriptedModel,
    ServerError,
    TokenAlternative,
)
from demur.estimators.ptrue import (
    FALSE_WORDS,
    TRUE_WORDS,
    PTrue,
    binary_mass,
    normalize_token,
)

# --- the token mass ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "word"),
    [
        ("True", "true"),
        (" True", "true"),
        ("true", "true"),
        (" A", "a"),
        ("(A)", "a"),
        (" (B", "b"),
        ("Yes", "yes"),
        (" yes.", "yes"),
        ("FALSE", "false"),
        ("\n", ""),
    ],
)
def test_tokens_are_read_as_words(token: str, word: str) -> None:
    assert normalize_token(token) == word


def test_variants_of_true_and_false_add_up() -> None:
    top = (
        TokenAlternative(token=" True", logprob=math.log(0.4)),
        TokenAlternative(token="True", logprob=math.log(0.1)),
        TokenAlternative(token=" A", logprob=math.log(0.05)),
        TokenAlternative(token=" yes", logprob=math.log(0.05)),
        TokenAlternative(token=" False", logprob=math.log(0.2)),
        TokenAlternative(token="B", logprob=math.log(0.05)),
        TokenAlternative(token=" (", logprob=math.log(0.15)),
    )
    true, false = binary_mass(top, TRUE_WORDS, FALSE_WORDS)
    assert true == pytest.approx(0.6)
    assert false == pytest.approx(0.25)


# --- through the router -----------------------------------------------------------------------


def is_grading(request: GenerationRequest) -> bool:
    text = request.prompt or " ".join(m.content for m in request.messages or ())
    return "Proposed answer: " in text


def one_token(text: str, *top: tuple[str, float]) -> Reply:
    """A one-token reply with the given top alternatives (token, probability)."""
    chosen = dict(top).get(text, top[0][1])
    return Reply(
        text=text,
        logprobs=(math.log(chosen),),
        top=(tuple((t, math.log(p)) for t, p in top),),
    )


def grader(reply: Reply | str | Exception, **kwargs: object) -> ScriptedModel:
    """Answers 'Paris'; grading questions get `reply`."""

    def script(request: GenerationRequest) -> Reply | str | Exception:
        return reply if is_grading(request) else Reply.confident("Paris", 0.9)

    return ScriptedModel("m", script, **kwargs)  # type: ignore[arg-type]


TYPICAL = one_token(" True", (" True", 0.5), (" (", 0.15), (" False", 0.2), ("True", 0.1))


def test_p_true_is_the_true_mass_over_true_and_false() -> None:
    model = grader(TYPICAL, price=Price(output_per_1k=1000.0))
    router = Router([model], estimators=[PTrue()], policy=Ladder(0.5))
    verdict = router.route(Query("Capital of France?"))
    score = verdict.steps[0].scores[0]
    assert (score.estimator, score.status) == ("ptrue", "ok")
    assert score.confidence == pytest.approx(0.6 / 0.8)
    assert "P(true)=0.6" in (score.detail or "")
    assert verdict.steps[0].calls == 2
    assert verdict.steps[0].cost == pytest.approx(1 + 1)
    asked = model.calls[1]
    assert (asked.max_tokens, asked.logprobs, asked.top_logprobs) == (1, True, 20)
    assert asked.messages is not None
    assert "(A) True\n (B) False" in asked.messages[-1].content
    assert "Proposed answer: Paris" in asked.messages[-1].content


def test_the_answer_call_is_not_asked_for_logprobs_on_its_behalf() -> None:
    model = grader(TYPICAL)
    Router([model], estimators=[PTrue()], policy=Ladder(0.5)).route("Q?")
    assert not model.calls[0].logprobs


def test_a_base_model_gets_the_few_shot_kadavath_prompt() -> None:
    model = grader(one_token(" False", (" False", 0.6), (" True", 0.2)))
    model.default_prompt = CompletionPrompt()
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    router = Router([weak], estimators=[PTrue(model)], policy=Ladder(0.5))
    score = router.route("Capital of France?").steps[0].scores[0]
    assert score.estimator == "ptrue_m"
    assert score.confidence == pytest.approx(0.25)
    prompt = model.calls[0].prompt or ""
    assert prompt.endswith(
        "Question: Capital of France?\nProposed answer: Paris\n"
        "Is the proposed answer:\n (A) True\n (B) False\nThe proposed answer is:"
    )
    assert "The proposed answer is: True\n\n" in prompt
    assert "The proposed answer is: False\n\n" in prompt


def test_letters_and_yes_no_count_too() -> None:
    reply = one_token(" A", (" A", 0.3), (" B", 0.1), (" No", 0.1))
    router = Router([grader(reply)], estimators=[PTrue()], policy=Ladder(0.5))
    assert router.route("Q?").steps[0].scores[0].confidence == pytest.approx(0.3 / 0.5)


def test_no_logprobs_is_unavailable_with_a_clear_message() -> None:
    router = Router([grader(Reply(text="True"))], estimators=[PTrue()], policy=Ladder(0.5))
    score = router.route("Q?").steps[0].scores[0]
    assert score.status == "unavailable"
    assert "returned no logprobs" in (score.detail or "")


def test_a_reply_that_ends_at_once_is_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="ended its reply at once"):
        PTrue().score(Completion(text="", tokens=()), "m")


def test_no_top_alternatives_is_unavailable() -> None:
    reply = Reply(text="True", logprobs=(math.log(0.7),), top=((),))
    score = (
        Router([grader(reply)], estimators=[PTrue()], policy=Ladder(0.5))
        .route("Q?")
        .steps[0]
        .scores[0]
    )
    assert score.status == "unavailable"
    assert "top-20 alternatives" in (score.detail or "")


def test_neither_true_nor_false_in_the_top_k_is_unavailable() -> None:
    reply = one_token("The", ("The", 0.6), (" (", 0.2), ("Paris", 0.1))
    score = (
        Router([grader(reply)], estimators=[PTrue()], policy=Ladder(0.5))
        .route("Q?")
        .steps[0]
        .scores[0]
    )
    assert score.status == "unavailable"
    assert "neither True nor False" in (score.detail or "")
    assert "'The'" in (score.detail or "")


def test_a_positive_logprob_fails_the_score_instead_of_counting_as_certain() -> None:
    reply = Reply(text="True", logprobs=(0.0,), top=(((" True", 2.5), (" False", -1.0)),))
    score = (
        Router([grader(reply)], estimators=[PTrue()], policy=Ladder(0.5))
        .route("Q?")
        .steps[0]
        .scores[0]
    )
    assert (score.status, score.confidence) == ("failed", None)
    assert "log-probability 2.5 (a top-k alternative)" in (score.detail or "")


def test_a_failing_grader_fails_the_estimator_only() -> None:
    router = Router([grader(ServerError("down"))], estimators=[PTrue()], policy=Ladder(0.5))
    router.retry = RetryPolicy(max_attempts=1)
    step = router.route("Q?").steps[0]
    assert step.scores[0].status == "failed"
    assert (step.scores[0].error_type, step.scores[0].detail) == (
        "ServerError",
        "ptrue raised ServerError",
    )
    assert step.candidate is not None and step.candidate.text == "Paris"


def test_it_is_async_only() -> None:
    assert not PTrue().in_process


# --- real models ------------------------------------------------------------------------------

QUERY = Query(
    "Which novel did Jane Austen publish in 1815?",
    context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
)


@pytest.mark.local_model
@pytest.mark.parametrize("builtin", ["smollm2-135m", "gemma-3-270m"])
async def test_real_models_put_mass_on_true_or_false(builtin: str) -> None:
    from demur import LlamaCppModel

    model = LlamaCppModel("m", builtin=builtin, max_tokens=24)
    router = Router([model], estimators=[PTrue()], policy=Ladder(0.5), estimator_timeout_s=120)
    try:
        verdict = await router.aroute(QUERY)
    finally:
        await router.aclose()
    score = verdict.steps[0].scores[0]
    assert score.status in ("ok", "unavailable"), score.detail
    if score.ok:
        assert score.confidence is not None and 0.0 <= score.confidence <= 1.0
        assert "P(true)=" in (score.detail or "")
    else:
        assert "neither True nor False" in (score.detail or "")

"""Verbalized confidence: the reply parser, the prompts, and routes through scripted and real
models."""

from __future__ import annotations

import asyncio
import logging

import pytest

from demur import (
    Candidate,
    CompletionPrompt,
    ConfigError,
    EstimatorUnavailable,
    GenerationRequest,
    Ladder,
    PermanentModelError,
    Price,
    Query,
    Reply,
    Router,
    ScriptedModel,
)
from demur.estimators.base import Attempt
from demur.estimators.verbal import (
    GRADED_EXAMPLES,
    ModelAsker,
    VerbalizedConfidence,
    parse_confidence,
)

# --- parse_confidence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # percentages
        ("85%", 0.85),
        ("85 %", 0.85),
        ("85.5%", 0.855),
        ("85 percent", 0.85),
        ("0%", 0.0),
        ("100%", 1.0),
        ("Confidence: 85%", 0.85),
        ("I am 90% confident that the answer is right.", 0.9),
        ("The answer is 1815 and I am 85% sure", 0.85),
        ("Sure! 85%", 0.85),
        # probabilities
        ("0.85", 0.85),
        (".85", 0.85),
        ("1.0", 1.0),
        ("0", 0.0),
        ("Probability: 0.3", 0.3),
        # bare integers are percentages: the prompt asks for 0 to 100
        ("85", 0.85),
        ("100", 1.0),
        ("1", 0.01),
        ("Confidence: 85", 0.85),
        ("100. The answer is correct.", 1.0),
        ("**70**", 0.7),
        ("The answer is 99.9", 0.999),
        # fractions and ranges
        ("85/100", 0.85),
        ("8/10", 0.8),
        ("8 / 10", 0.8),
        ("8 out of 10", 0.8),
        ("10/10", 1.0),
        ("80-90%", 0.85),
        ("80 to 90 percent", 0.85),
        ("between 70–80%", 0.75),
        # words
        ("Confidence: high", 0.8),
        ("HIGH", 0.8),
        ("very high", 0.9),
        ("Very high, very high.", 0.9),
        ("medium", 0.5),
        ("low", 0.2),
        ("very low", 0.1),
        ("Confidence: very low", 0.1),
        ("certain", 0.95),
        ("I am almost certain.", 0.9),
        ("likely", 0.7),
        ("highly unlikely", 0.1),
        ("I'm not sure", 0.5),
        ("I’m not sure", 0.5),
        ("uncertain", 0.5),
        ("not confident", 0.2),
        ("not confident at all", 0.1),
        ("absolutely not", 0.05),
        ("I'm not 100% sure", 0.8),  # the number is negated; "sure" remains
    ],
)
def test_parse_confidence_reads_numbers_and_words(text: str, expected: float) -> None:
    assert parse_confidence(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Paris",
        "The proposed answer is correct.",
        "asdf qwerty",
        "n/a",
        # refusals
        "I cannot determine that.",
        "As an AI, I can't say.",
        "I don't know",
        "Sorry, I am unable to answer.",
        # out of range
        "150%",
        "101%",
        "12/10",
        "-5",
        "-5%",
        "1815",
        "Emma was published in 1815",
        "I'm 150% sure",
        # the scale echoed back, or several unmarked numbers
        "0% to 100%",
        "The proposed answer is 0% to 100",
        "I am 90 or 95",
        "Sure.",
    ],
)
def test_parse_confidence_rejects_replies_that_state_no_confidence(text: str) -> None:
    assert parse_confidence(text) is None


def test_parse_confidence_always_lies_in_the_unit_interval() -> None:
    texts = ["0.0001", "99.99999%", "1/1", "0/10", "100/100", ".0", "certain", "impossible"]
    for text in texts:
        value = parse_confidence(text)
        assert value is not None and 0.0 <= value <= 1.0, text


# --- through the router -----------------------------------------------------------------------


def is_grading(request: GenerationRequest) -> bool:
    text = request.prompt or " ".join(m.content for m in request.messages or ())
    return "Proposed answer: " in text


def grader(reply: str | Reply | Exception, *, name: str = "m", **kwargs: object) -> ScriptedModel:
    """Answers 'Paris'; grading questions get `reply`."""

    def script(request: GenerationRequest) -> Reply | str | Exception:
        return reply if is_grading(request) else Reply.confident("Paris", 0.9)

    return ScriptedModel(name, script, **kwargs)  # type: ignore[arg-type]


def test_the_model_states_its_confidence_and_the_step_counts_the_call() -> None:
    model = grader("I'd say 85%.", price=Price(output_per_1k=1000.0))
    router = Router([model], estimators=[VerbalizedConfidence()], policy=Ladder(0.5))
    verdict = router.route(Query("Capital of France?", context=("Paris is France's capital.",)))
    score = verdict.steps[0].scores[0]
    assert (score.estimator, score.status, score.confidence) == ("verbal", "ok", 0.85)
    assert "85%" in (score.detail or "")
    step = verdict.steps[0]
    assert step.calls == 2
    assert step.cost == pytest.approx(1 + 3)  # 'Paris', then "I'd say 85%."
    asked = model.calls[1]
    assert asked.messages is not None and asked.prompt is None
    assert "Question: Capital of France?" in asked.messages[-1].content
    assert "Proposed answer: Paris" in asked.messages[-1].content
    assert "Passage: Paris is France's capital." in asked.messages[-1].content
    assert "between 0 and 100" in asked.messages[-1].content


def test_garbage_is_unavailable_and_quotes_the_reply() -> None:
    router = Router(
        [grader("The proposed answer is correct.")],
        estimators=[VerbalizedConfidence()],
        policy=Ladder(0.5),
    )
    score = router.route("Q?").steps[0].scores[0]
    assert score.status == "unavailable"
    assert "'The proposed answer is correct.'" in (score.detail or "")
    assert "larger model" in (score.detail or "")


def test_a_long_reply_is_quoted_truncated() -> None:
    router = Router(
        [grader("blah " * 100)], estimators=[VerbalizedConfidence()], policy=Ladder(0.5)
    )
    detail = router.route("Q?").steps[0].scores[0].detail or ""
    assert "…" in detail and len(detail) < 300


def test_a_refusal_is_unavailable() -> None:
    router = Router(
        [grader("As an AI, I cannot know.")],
        estimators=[VerbalizedConfidence()],
        policy=Ladder(0.5),
    )
    assert router.route("Q?").steps[0].scores[0].status == "unavailable"


def test_another_model_can_be_asked_and_names_the_estimator() -> None:
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    strong = grader("0.7", name="strong")
    router = Router([weak, strong], estimators=[VerbalizedConfidence("strong")], policy=Ladder(0.5))
    score = router.route("Q?").steps[0].scores[0]
    assert (score.estimator, score.confidence) == ("verbal_strong", 0.7)
    assert len(weak.calls) == 1 and len(strong.calls) == 1


def test_a_completion_model_object_gets_a_few_shot_prompt() -> None:
    base = grader(" 80%", name="base", default_prompt=CompletionPrompt())
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    router = Router([weak], estimators=[VerbalizedConfidence(base)], policy=Ladder(0.5))
    score = router.route("Capital of France?").steps[0].scores[0]
    assert score.confidence == 0.8
    request = base.calls[0]
    assert request.messages is None and request.prompt is not None
    assert request.stop == ("\n",)
    assert request.prompt.endswith(
        "Question: Capital of France?\nProposed answer: Paris\n"
        "Confidence that the proposed answer is correct (0-100%):"
    )
    for example in GRADED_EXAMPLES:
        assert f"Proposed answer: {example.answer}\n" in request.prompt
    assert "Passage:" not in request.prompt  # no passage in the query, none in the examples


def test_a_model_that_refuses_chat_is_asked_again_with_a_prompt_once_and_for_all() -> None:
    def base_model(request: GenerationRequest) -> Reply | str | Exception:
        if request.messages is not None:
            return PermanentModelError("'m' has no chat template", model="m")
        return "90%" if is_grading(request) else Reply.confident("Paris", 0.9)

    model = ScriptedModel("m", base_model, default_prompt=CompletionPrompt())
    router = Router([model], estimators=[VerbalizedConfidence()], policy=Ladder(0.5))
    first = router.route("Q?").steps[0]
    assert first.scores[0].confidence == 0.9
    assert [r.messages is not None for r in model.calls] == [False, True, False]
    router.route("Q?")
    assert [r.messages is not None for r in model.calls[3:]] == [False, False]


def test_a_model_that_refuses_both_forms_fails_the_estimator_with_both_reasons(caplog) -> None:
    def broken(request: GenerationRequest) -> Reply | Exception:
        if is_grading(request):
            return PermanentModelError("rejected", model="m")
        return Reply.confident("Paris", 0.9)

    router = Router(
        [ScriptedModel("m", broken)],
        estimators=[VerbalizedConfidence()],
        policy=Ladder(0.5),
        capture_content=True,
    )
    with caplog.at_level(logging.WARNING, logger="demur.router"):
        score = router.route("Q?").steps[0].scores[0]
    assert (score.status, score.error_type) == ("failed", "EstimatorError")
    # The reasons quote the model's errors: the log has them, under capture_content.
    assert any("both as chat messages" in r.getMessage() for r in caplog.records)


def test_an_explicit_style_is_obeyed() -> None:
    model = grader("90%")
    router = Router(
        [model], estimators=[VerbalizedConfidence(style="completion")], policy=Ladder(0.5)
    )
    router.route("Q?")
    assert model.calls[1].prompt is not None


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="prompt style"):
        ModelAsker(None, style="instruct")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_tokens"):
        VerbalizedConfidence(max_tokens=0)


def test_scored_offline_it_is_unavailable() -> None:
    attempt = Attempt(query=Query("Q?"), candidate=Candidate(text="x", model="m"))
    with pytest.raises(EstimatorUnavailable, match="no model to ask"):
        asyncio.run(VerbalizedConfidence().aestimate(attempt))


def test_it_is_async_only_and_needs_nothing_from_the_answer() -> None:
    estimator = VerbalizedConfidence()
    assert not estimator.in_process
    assert not estimator.needs.logprobs


# --- real models ------------------------------------------------------------------------------

QUERY = Query(
    "Which novel did Jane Austen publish in 1815?",
    context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
)


@pytest.mark.local_model
@pytest.mark.parametrize("builtin", ["smollm2-135m", "gemma-3-270m"])
async def test_real_models_state_a_confidence_or_explain_why_not(builtin: str) -> None:
    from demur import LlamaCppModel

    model = LlamaCppModel("m", builtin=builtin, max_tokens=24)
    router = Router(
        [model], estimators=[VerbalizedConfidence()], policy=Ladder(0.5), estimator_timeout_s=120
    )
    try:
        verdict = await router.aroute(QUERY)
    finally:
        await router.aclose()
    score = verdict.steps[0].scores[0]
    assert score.status in ("ok", "unavailable"), score.detail
    if score.ok:
        assert score.confidence is not None and 0.0 <= score.confidence <= 1.0
    else:
        assert "no confidence could be read" in (score.detail or "")
    assert verdict.steps[0].calls >= 2

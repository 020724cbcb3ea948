"""LLM-as-a-judge: P(yes) from logprobs, yes/no or a 0-10 score from text, several judges."""

from __future__ import annotations

import math

import pytest

from demur import (
    CompletionPrompt,
    ConfigError,
    GenerationRequest,
    Ladder,
    Price,
    Query,
    Reply,
    Router,
    ScriptedModel,
)
from demur.estimators.judge import LLMJudge, parse_score, parse_verdict

# --- text parsers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yes.", True),
        (" YES", True),
        ("Correct", True),
        ("The proposed answer is correct.", True),
        ("True", True),
        ("no", False),
        ("No, it is not.", False),
        ("Incorrect", False),
        ("The proposed answer is not correct.", False),
        ("wrong", False),
        ("False", False),
        ("", None),
        ("maybe", None),
        ("I am not sure", None),
        ("yesterday, nobody", None),
    ],
)
def test_parse_verdict(text: str, expected: bool | None) -> None:
    assert parse_verdict(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", 0.7),
        ("Score: 7", 0.7),
        ("10", 1.0),
        ("0", 0.0),
        ("8.5", 0.85),
        ("7/10", 0.7),
        ("7 out of 10", 0.7),
        ("70%", 0.7),
        ("On a scale from 0 to 10, 6", 0.6),
        ("Score from 0 (wrong) to 10 (right): 8", 0.8),
        ("11", None),
        ("12/10", None),
        ("-3", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_parse_score(text: str, expected: float | None) -> None:
    result = parse_score(text)
    assert result == (pytest.approx(expected) if expected is not None else None)


# --- through the router -----------------------------------------------------------------------


def is_grading(request: GenerationRequest) -> bool:
    text = request.prompt or " ".join(m.content for m in request.messages or ())
    return "Proposed answer: " in text


def judge_model(name: str, reply: Reply | str, **kwargs: object) -> ScriptedModel:
    def script(request: GenerationRequest) -> Reply | str:
        assert is_grading(request), "the judge was asked something else"
        return reply

    return ScriptedModel(name, script, **kwargs)  # type: ignore[arg-type]


def weak() -> ScriptedModel:
    return ScriptedModel("weak", [Reply.confident("Paris", 0.9)], price=Price(output_per_1k=1000))


def verdict_reply(text: str, *top: tuple[str, float]) -> Reply:
    """A reply whose first token has the given top alternatives; later tokens have their own."""
    words = text.split()
    chosen = dict(top).get(words[0], top[0][1])
    first = tuple((t, math.log(p)) for t, p in top)
    rest = tuple(((w, 0.0),) for w in words[1:])
    return Reply(
        text=text,
        logprobs=(math.log(chosen),) + (0.0,) * (len(words) - 1),
        top=(first, *rest),
    )


def test_p_yes_comes_from_the_judges_top_logprobs() -> None:
    judge = judge_model(
        "strong",
        verdict_reply("yes", ("yes", 0.6), ("Yes", 0.1), ("no", 0.2), ("The", 0.05)),
        price=Price(output_per_1k=2000),
    )
    router = Router([weak(), judge], estimators=[LLMJudge("strong")], policy=Ladder(0.5))
    verdict = router.route(Query("Capital of France?", context=("Paris is the capital.",)))
    step = verdict.steps[0]
    score = step.scores[0]
    assert (score.estimator, score.status) == ("judge_strong", "ok")
    assert score.confidence == pytest.approx(0.7 / 0.9)
    assert "P(yes)=0.7" in (score.detail or "")
    assert step.calls == 2
    assert step.cost == pytest.approx(1 + 2)
    asked = judge.calls[0]
    assert (asked.logprobs, asked.top_logprobs) == (True, 20)
    assert asked.messages is not None
    assert "Proposed answer: Paris" in asked.messages[-1].content
    assert "Passage: Paris is the capital." in asked.messages[-1].content
    assert "yes or no" in asked.messages[-1].content


def test_the_verdict_token_may_come_after_a_preamble() -> None:
    reply = Reply(
        text="The answer is correct",
        logprobs=(0.0, 0.0, 0.0, math.log(0.5)),
        top=(
            (("The", 0.0),),
            (("answer", 0.0),),
            (("is", 0.0),),
            (("correct", math.log(0.5)), ("incorrect", math.log(0.3)), ("not", math.log(0.2))),
        ),
    )
    router = Router(
        [weak(), judge_model("j", reply)], estimators=[LLMJudge("j")], policy=Ladder(0.5)
    )
    assert router.route("Q?").steps[0].scores[0].confidence == pytest.approx(0.5 / 0.8)


@pytest.mark.parametrize(("text", "expected"), [("Yes, it is.", 1.0), ("No.", 0.0)])
def test_without_logprobs_the_text_decides(text: str, expected: float) -> None:
    router = Router(
        [weak(), judge_model("j", text)], estimators=[LLMJudge("j")], policy=Ladder(0.5)
    )
    score = router.route("Q?").steps[0].scores[0]
    assert (score.status, score.confidence) == ("ok", expected)
    assert repr(text) in (score.detail or "")


def test_logprobs_without_a_verdict_token_fall_back_to_the_text() -> None:
    reply = Reply(text="Looks fine, yes", logprobs=(0.0, 0.0, 0.0))
    router = Router(
        [weak(), judge_model("j", reply)], estimators=[LLMJudge("j")], policy=Ladder(0.5)
    )
    assert router.route("Q?").steps[0].scores[0].confidence == 1.0


def test_garbage_is_unavailable() -> None:
    router = Router(
        [weak(), judge_model("j", "Paris is a city in France")],
        estimators=[LLMJudge("j"), LLMJudge("j", mode="score")],
        policy=Ladder(0.5),
    )
    scores = router.route("Q?").steps[0].scores
    assert [s.status for s in scores] == ["unavailable", "unavailable"]
    assert "a yes or no" in (scores[0].detail or "")
    assert "a score from 0 to 10" in (scores[1].detail or "")
    assert "'Paris is a city in France'" in (scores[0].detail or "")


def test_score_mode_reads_a_rating_out_of_ten() -> None:
    judge = judge_model("j", "Score: 7/10")
    router = Router([weak(), judge], estimators=[LLMJudge("j", "score")], policy=Ladder(0.5))
    score = router.route("Q?").steps[0].scores[0]
    assert score.estimator == "judge_j_score"
    assert (score.value, score.confidence) == (pytest.approx(7), pytest.approx(0.7))
    assert not judge.calls[0].logprobs
    assert "0 (certainly wrong) to 10" in (judge.calls[0].messages or ())[-1].content


def test_several_judges_coexist_and_each_call_is_counted() -> None:
    a = judge_model("a", "yes", price=Price(output_per_1k=1000))
    b = judge_model("b", "no", price=Price(output_per_1k=1000))
    router = Router([weak(), a, b], estimators=[LLMJudge("a"), LLMJudge("b")], policy=Ladder(0.4))
    verdict = router.route("Q?")
    step = verdict.steps[0]
    assert {s.estimator: s.confidence for s in step.scores} == {"judge_a": 1.0, "judge_b": 0.0}
    assert step.calls == 3
    assert step.cost == pytest.approx(3)
    assert verdict.confidence == 0.5


def test_a_judge_outside_the_cascade_can_be_a_model_object() -> None:
    outside = judge_model("outside", " yes", default_prompt=CompletionPrompt())
    router = Router([weak()], estimators=[LLMJudge(outside)], policy=Ladder(0.5))
    score = router.route("Capital of France?").steps[0].scores[0]
    assert (score.estimator, score.confidence) == ("judge_outside", 1.0)
    prompt = outside.calls[0].prompt or ""
    assert prompt.endswith(
        "Question: Capital of France?\nProposed answer: Paris\n"
        "Is the proposed answer correct (yes or no)?"
    )
    assert "Proposed answer: Charles Dickens\nIs the proposed answer correct (yes or no)? no" in (
        prompt
    )


def test_the_few_shot_score_prompt_shows_ratings() -> None:
    outside = judge_model("outside", " 9", default_prompt=CompletionPrompt())
    router = Router([weak()], estimators=[LLMJudge(outside, "score")], policy=Ladder(0.5))
    assert router.route("Q?").steps[0].scores[0].confidence == pytest.approx(0.9)
    prompt = outside.calls[0].prompt or ""
    assert "Score from 0 (wrong) to 10 (right): 10\n\n" in prompt
    assert "Score from 0 (wrong) to 10 (right): 0\n\n" in prompt


def test_a_misspelt_judge_fails_the_estimator_only() -> None:
    router = Router([weak()], estimators=[LLMJudge("strnog")], policy=Ladder(0.5))
    score = router.route("Q?").steps[0].scores[0]
    assert score.status == "failed"
    assert "model 'strnog'" in (score.detail or "")


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs a judge"):
        LLMJudge("")
    with pytest.raises(ConfigError, match="yes_no"):
        LLMJudge("j", mode="stars")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_tokens"):
        LLMJudge("j", max_tokens=0)


def test_it_is_async_only_and_needs_nothing_from_the_answer() -> None:
    judge = LLMJudge("j")
    assert not judge.in_process
    assert not judge.needs.logprobs


# --- real models ------------------------------------------------------------------------------

QUERY = Query(
    "Which novel did Jane Austen publish in 1815?",
    context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
)


@pytest.fixture(scope="module")
def local_models():  # type: ignore[no-untyped-def]
    from demur import LlamaCppModel

    return (
        LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24),
        LlamaCppModel("strong", builtin="gemma-3-270m", max_tokens=24),
    )


@pytest.mark.local_model
@pytest.mark.parametrize("mode", ["yes_no", "score"])
async def test_real_judges_grade_the_weak_answer(local_models, mode: str) -> None:  # type: ignore[no-untyped-def]
    # The strong model is a base model named only by the router: the judge asks it in chat
    # form, is refused (no chat template), and asks again with a few-shot prompt.
    router = Router(
        list(local_models),
        estimators=[LLMJudge("strong", mode), LLMJudge("weak", mode)],  # type: ignore[arg-type]
        policy=Ladder(0.0),
        estimator_timeout_s=120,
    )
    verdict = await router.aroute(QUERY)
    for score in verdict.steps[0].scores:
        assert score.status in ("ok", "unavailable"), score.detail
        if score.ok:
            assert score.confidence is not None and 0.0 <= score.confidence <= 1.0
        else:
            assert "no verdict could be read" in (score.detail or "")
    assert verdict.steps[0].calls >= 3

"""Passages that overflow a model's context window are dropped, then trimmed, never looped on."""

from __future__ import annotations

import asyncio
import re

import pytest

from demur import (
    ContextOverflowError,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    Query,
    Reply,
    Router,
    ScriptedModel,
    Verdict,
)
from demur.types import GenerationRequest

LIMIT = 500  # tokens; a token is four characters here
MAX_CALLS = 200  # far more than any trim needs; a model called more often is looping
LEAD = "Jane Austen wrote Emma. "
PASSAGE = LEAD + "filler " * 710  # about 5,000 characters
QUESTION = "Who wrote Emma?"
TRIM_NOTE = re.compile(
    r"passage trimmed from ([\d,]+) to ([\d,]+) characters to fit weak's context window"
)


def _chars(request: GenerationRequest) -> int:
    return sum(len(m.content) for m in request.messages or ())


def _seen(request: GenerationRequest) -> str:
    return "\n".join(m.content for m in request.messages or ())


def window(limit: int = LIMIT, *, counts: bool = True, name: str = "weak") -> ScriptedModel:
    """A model whose context window holds `limit` tokens of four characters each."""
    model: ScriptedModel

    def reply(request: GenerationRequest) -> Reply:
        if len(model.calls) > MAX_CALLS:
            raise AssertionError(f"{name} was called {len(model.calls)} times")
        tokens = _chars(request) // 4
        if tokens > limit:
            message = f"prompt is {tokens} tokens but {name}'s context window is {limit}"
            if counts:
                raise ContextOverflowError(message, model=name, prompt_tokens=tokens, limit=limit)
            raise ContextOverflowError(message, model=name)
        return Reply.confident("Jane Austen", 0.9)

    model = ScriptedModel(name, reply)
    return model


def route(router: Router, *context: str) -> Verdict:
    async def go() -> Verdict:
        return await asyncio.wait_for(router.aroute(Query(QUESTION, context=context)), 30)

    return asyncio.run(go())


def one_model(model: ScriptedModel) -> Router:
    return Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5))


def _trim(notes: tuple[str, ...]) -> tuple[int, int]:
    found = [m for m in map(TRIM_NOTE.fullmatch, notes) if m is not None]
    assert len(found) == 1, notes
    before, after = (int(n.replace(",", "")) for n in found[0].groups())
    return before, after


def test_a_long_passage_is_trimmed_to_fit_instead_of_dropped() -> None:
    model = window()
    verdict = route(one_model(model), PASSAGE)
    assert verdict.status == "answered" and verdict.answer == "Jane Austen"
    step = verdict.steps[0]
    assert step.error is None
    before, after = _trim(step.notes)
    assert before == len(PASSAGE) and after < before
    assert step.candidate is not None
    kept = step.candidate.documents[0].text
    assert len(kept) == after and PASSAGE.startswith(kept) and kept.startswith(LEAD)
    answered = model.calls[-1]
    assert kept in _seen(answered) and PASSAGE not in _seen(answered)
    assert _chars(answered) // 4 <= LIMIT


def test_token_counts_trim_in_one_retry_without_wasting_the_window() -> None:
    model = window()
    route(one_model(model), PASSAGE)
    assert len(model.calls) == 2
    assert _chars(model.calls[-1]) // 4 > LIMIT * 0.6


def test_extra_passages_are_dropped_before_the_last_is_trimmed() -> None:
    second = "Second passage. " + "more " * 200
    third = "Third passage. " + "more " * 200
    model = window()
    verdict = route(one_model(model), PASSAGE, second, third)
    assert verdict.answer == "Jane Austen"
    notes = verdict.steps[0].notes
    assert len(notes) == 2
    assert notes[0] == "2 passage(s) dropped to fit weak's context window"
    assert _trim(notes)[0] == len(PASSAGE)
    seen = [_seen(r) for r in model.calls]
    assert "Second passage" in seen[0] and "Third passage" in seen[0]
    assert "Second passage" in seen[1] and "Third passage" not in seen[1]
    assert PASSAGE in seen[2] and "Second passage" not in seen[2]
    assert PASSAGE not in seen[3] and LEAD in seen[3]
    assert len(model.calls) == 4


def test_without_token_counts_the_passage_is_halved_until_it_fits() -> None:
    model = window(counts=False)
    verdict = route(one_model(model), PASSAGE)
    assert verdict.answer == "Jane Austen"
    before, after = _trim(verdict.steps[0].notes)
    assert before == len(PASSAGE)
    assert len(PASSAGE) // 4 - 2 * len("filler ") <= after <= len(PASSAGE) // 4
    assert len(model.calls) == 3  # 5,000 then about 2,500 then about 1,250 characters


def test_a_passage_that_fits_is_left_alone() -> None:
    model = window()
    verdict = route(one_model(model), LEAD)
    assert verdict.steps[0].notes == ()
    assert len(model.calls) == 1


def test_a_passage_too_long_by_the_counts_fails_the_route_at_once() -> None:
    model = window(limit=5)  # the question alone overflows
    with pytest.raises(ContextOverflowError, match="does not fit any model that was tried"):
        route(one_model(model), PASSAGE)
    assert len(model.calls) == 1


def test_without_counts_a_passage_that_never_fits_is_halved_away_then_fails() -> None:
    model = window(limit=5, counts=False)
    with pytest.raises(ContextOverflowError, match="does not fit any model that was tried"):
        route(one_model(model), PASSAGE)
    assert len(model.calls) <= len(PASSAGE).bit_length() + 1


@pytest.mark.parametrize("passage", ["x" * 5000, PASSAGE], ids=["one-word", "words"])
def test_counts_that_would_not_shorten_the_passage_fall_back_to_halving(passage: str) -> None:
    model: ScriptedModel

    def just_over(request: GenerationRequest) -> Reply:
        if len(model.calls) > MAX_CALLS:
            raise AssertionError(f"weak was called {len(model.calls)} times")
        raise ContextOverflowError(
            "one token over", model="weak", prompt_tokens=10**6 + 1, limit=10**6
        )

    model = ScriptedModel("weak", just_over)
    with pytest.raises(ContextOverflowError, match="does not fit any model that was tried"):
        route(one_model(model), passage)
    assert len(model.calls) <= len(passage).bit_length() + 1


def test_a_weak_model_that_cannot_fit_escalates_with_the_whole_passage() -> None:
    weak = window(limit=5)
    strong = window(limit=10_000, name="strong")
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[Escalate("strong")]),
    )
    verdict = route(router, PASSAGE)
    first, second = verdict.steps
    assert first.error_type == "ContextOverflowError" and first.notes == ()
    assert verdict.answer == "Jane Austen" and verdict.model == "strong"
    assert second.notes == ()
    assert PASSAGE in _seen(strong.calls[0]) and len(strong.calls) == 1

"""LLM-as-a-judge: another model grades the answer.

In "yes_no" mode the judge is asked whether the answer is correct, and the confidence is the
probability it gives to "yes" against "no" (from its top-20 token alternatives), or its plain
yes or no when the backend gives no logprobs. In "score" mode it rates the answer from 0 to 10
and the confidence is the score over 10.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from demur.errors import ConfigError, EstimatorUnavailable, check_range
from demur.estimators.ptrue import TOP_K, binary_mass, normalize_token
from demur.estimators.verbal import (
    AskingEstimator,
    GradedExample,
    ModelAsker,
    PromptStyle,
    chat_request,
    few_shot_prompt,
    quote,
)
from demur.protocols import NOTHING, Attempt, Needs
from demur.types import Completion, GenerationRequest, Score

if TYPE_CHECKING:
    from demur.protocols import Model

JudgeMode = Literal["yes_no", "score"]
MODES: tuple[str, ...] = ("yes_no", "score")

YES_WORDS = frozenset({"yes", "correct", "true", "right"})
NO_WORDS = frozenset({"no", "incorrect", "false", "wrong"})

_VERDICT = re.compile(
    r"\b(?:(?P<no>not (?:correct|right|true)|incorrect|wrong|false|no)"
    r"|(?P<yes>yes|correct|right|true))\b"
)
_SCALE_ECHO = re.compile(r"\b0\s*(?:\([^)]*\)\s*)?(?:-|–|to)\s*10\b")
_SCORE = re.compile(
    r"(?<![\w.\-−])(?P<num>\d+(?:\.\d+)?)\s*(?:(?:/|out\s+of\b)\s*(?P<den>\d+(?:\.\d+)?))?"
    r"(?P<pct>\s*%)?"
)


def parse_verdict(text: str) -> bool | None:
    """True for a reply that says yes (or correct, true, right), False for one that says no
    (or incorrect, not correct, false, wrong); the first such word decides. None otherwise."""
    match = _VERDICT.search(text.lower())
    if match is None:
        return None
    return match["yes"] is not None


def parse_score(text: str, scale: float = 10.0) -> float | None:
    """The first score in a reply, in [0, 1]: "7" and "Score: 7" on a 0-`scale` scale, "7/10"
    and "7 out of 10" as fractions, "70%" as a percentage. None when there is none, or when it
    lies outside its scale. The scale echoed back ("from 0 to 10") is skipped."""
    match = _SCORE.search(_SCALE_ECHO.sub(" ", text.lower()))
    if match is None:
        return None
    value = float(match["num"])
    if match["den"] is not None:
        denominator = float(match["den"])
        return value / denominator if denominator > 0 and value <= denominator else None
    if match["pct"]:
        return value / 100 if value <= 100 else None
    return value / scale if value <= scale else None


YES_NO_INSTRUCTION = "Is the proposed answer correct? Reply with yes or no."
YES_NO_CUE = "Is the proposed answer correct (yes or no)?"
SCORE_INSTRUCTION = (
    "How correct is the proposed answer, on a scale from 0 (certainly wrong) to 10 "
    "(certainly right)? Reply with the number only."
)
SCORE_CUE = "Score from 0 (wrong) to 10 (right):"


def _yes_no_reply(example: GradedExample) -> str:
    return "yes" if example.correct else "no"


def _score_reply(example: GradedExample) -> str:
    return str(round(example.confidence / 10))


class LLMJudge(AskingEstimator):
    """A judge model grades the candidate answer.

    `judge` is a router model's name or a Model object outside the cascade; its name is part
    of the estimator's name (`judge_<name>`, or `judge_<name>_score` in score mode), so several
    judges can score one answer. `mode` is "yes_no" (the probability of "yes", preferred from
    the top-20 logprobs of the judge's verdict token, else its yes or no read from the text:
    1.0 or 0.0) or "score" (a 0-10 rating read from the text, over 10; "10" spans two tokens
    in many vocabularies, so the text is more reliable than digit probabilities here). A reply
    with no readable verdict is "unavailable".
    """

    needs: Needs = NOTHING  # the judge's own call asks for logprobs, not the answer's

    def __init__(
        self,
        judge: Model | str,
        mode: JudgeMode = "yes_no",
        *,
        style: PromptStyle = "auto",
        max_tokens: int = 8,
    ) -> None:
        if judge is None or (isinstance(judge, str) and not judge.strip()):
            raise ConfigError(
                "LLMJudge needs a judge: a router model's name, e.g. LLMJudge('strong'), "
                "or a Model object"
            )
        if mode not in MODES:
            raise ConfigError(
                f"LLMJudge(mode={mode!r}): use 'yes_no' (probability of yes) or 'score' (0-10)"
            )
        self.max_tokens = check_range("LLMJudge", "max_tokens", max_tokens, 1, integer=True)
        self.asker = ModelAsker(judge, style)
        self.mode: JudgeMode = mode
        self.name = f"judge_{self.asker.label}" + ("_score" if mode == "score" else "")

    def _request(self, attempt: Attempt, chat: bool) -> GenerationRequest:
        yes_no = self.mode == "yes_no"
        top_k = TOP_K if yes_no else 0
        if chat:
            instruction = YES_NO_INSTRUCTION if yes_no else SCORE_INSTRUCTION
            return GenerationRequest(
                messages=chat_request(attempt, instruction),
                max_tokens=self.max_tokens,
                logprobs=yes_no,
                top_logprobs=top_k,
            )
        prompt = (
            few_shot_prompt(attempt, YES_NO_CUE, _yes_no_reply)
            if yes_no
            else few_shot_prompt(attempt, SCORE_CUE, _score_reply)
        )
        return GenerationRequest(
            prompt=prompt,
            max_tokens=self.max_tokens,
            logprobs=yes_no,
            top_logprobs=top_k,
            stop=("\n",),
        )

    def _from_logprobs(self, completion: Completion) -> Score | None:
        """P(yes) at the judge's first verdict token, when the backend gave its top-k."""
        for token in completion.tokens or ():
            if normalize_token(token.token) in YES_WORDS | NO_WORDS:
                yes, no = binary_mass(token.top, YES_WORDS, NO_WORDS)
                if yes + no <= 0.0:
                    return None
                return Score(
                    estimator=self.name,
                    value=yes / (yes + no),
                    confidence=yes / (yes + no),
                    detail=f"P(yes)={yes:.3g}, P(no)={no:.3g} in the top {len(token.top)}",
                )
        return None

    def score(self, completion: Completion, judge: str) -> Score:
        """The score of the judge's reply."""
        reply = completion.text.strip()
        if self.mode == "yes_no":
            from_logprobs = self._from_logprobs(completion)
            if from_logprobs is not None:
                return from_logprobs
            verdict = parse_verdict(reply)
            confidence = None if verdict is None else float(verdict)
            wanted = "a yes or no"
        else:
            confidence = parse_score(reply)
            wanted = "a score from 0 to 10"
        if confidence is None:
            raise EstimatorUnavailable(
                f"{self.name}: no verdict could be read in {judge}'s reply {quote(reply)} "
                f"(expected {wanted}); try a larger judge model"
            )
        return Score(
            estimator=self.name,
            value=confidence * 10 if self.mode == "score" else confidence,
            confidence=confidence,
            detail=f"said {quote(reply)}",
        )

    def __repr__(self) -> str:
        return f"LLMJudge({self.asker.label!r}, mode={self.mode!r})"

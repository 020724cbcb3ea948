"""Verbalized confidence: ask a model how sure it is that the answer is right, and read the number.

This module also holds what the reflexive estimators (verbal, ptrue, judge) share: the grading
question in chat and completion form, `ModelAsker`, which sends it in the form a model takes,
and `AskingEstimator`, their base: ask, then score the reply.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from demur.bases import EstimatorBase
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    EstimatorError,
    EstimatorUnavailable,
    ModelNotFoundError,
    PermanentModelError,
    check_range,
)
from demur.prompts import ChatPrompt, CompletionPrompt
from demur.protocols import NOTHING, Attempt, Needs
from demur.types import Completion, GenerationRequest, Message, Query, Score

if TYPE_CHECKING:
    from demur.protocols import Model

PromptStyle = Literal["auto", "chat", "completion"]
STYLES: tuple[str, ...] = ("auto", "chat", "completion")

# --- the grading question, shared by the reflexive estimators ---------------------------------


@dataclass(frozen=True)
class GradedExample:
    """A worked example for few-shot grading prompts: a proposed answer and its true verdict."""

    context: str
    question: str
    answer: str
    correct: bool
    confidence: int  # percent, what a well-calibrated grader would say


GRADED_EXAMPLES: tuple[GradedExample, ...] = (
    GradedExample(
        context="The Eiffel Tower is a wrought-iron tower in Paris, completed in 1889.",
        question="In which city is the Eiffel Tower?",
        answer="Paris",
        correct=True,
        confidence=95,
    ),
    GradedExample(
        context="Jane Austen published Emma in 1815; it was her fourth novel.",
        question="Who wrote Emma?",
        answer="Charles Dickens",
        correct=False,
        confidence=5,
    ),
    GradedExample(
        context="Mount Kilimanjaro, in Tanzania, rises 5,895 metres above sea level.",
        question="How high is Mount Kilimanjaro?",
        answer="5,895 metres",
        correct=True,
        confidence=90,
    ),
    GradedExample(
        context="The Beatles formed in Liverpool in 1960. The Rolling Stones formed in London "
        "in 1962.",
        question="Which band formed first, the Beatles or the Rolling Stones?",
        answer="The Rolling Stones",
        correct=False,
        confidence=20,
    ),
)

GRADER_SYSTEM = (
    "You are a careful grader. You check whether a proposed answer to a question is correct, "
    "using the passage when one is given."
)


def grading_body(question: str, answer: str, context: str | None) -> str:
    """The passage (if any), the question and the proposed answer, as a grader reads them."""
    lines = [f"Passage: {context}", ""] if context else []
    lines += [f"Question: {question}", f"Proposed answer: {answer}"]
    return "\n".join(lines)


def chat_request(attempt: Attempt, instruction: str) -> tuple[Message, ...]:
    """System and user messages asking a chat model about the attempt's answer."""
    context = "\n\n".join(attempt.query.context) or None
    body = grading_body(attempt.query.question, attempt.candidate.text, context)
    return (
        Message(role="system", content=GRADER_SYSTEM),
        Message(role="user", content=f"{body}\n\n{instruction}"),
    )


def few_shot_prompt(attempt: Attempt, cue: str, reply: Callable[[GradedExample], str]) -> str:
    """A few-shot grading prompt for a base model: worked examples, then the attempt, then `cue`.

    Each example ends with `cue` and `reply(example)`; the attempt ends with the bare `cue`, so the
    model's continuation is its verdict. Passages appear only when the query has one.
    """
    query: Query = attempt.query
    context = "\n\n".join(query.context) or None
    blocks = [
        grading_body(e.question, e.answer, e.context if context else None) + f"\n{cue} {reply(e)}"
        for e in GRADED_EXAMPLES
    ]
    blocks.append(grading_body(query.question, attempt.candidate.text, context) + f"\n{cue}")
    return "\n\n".join(blocks)


def quote(text: str, limit: int = 80) -> str:
    """`text` as a repr, cut to `limit` characters, for error messages."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- sending it in the form a model takes -----------------------------------------------------


def _style_of(model: Model | str | None) -> Literal["chat", "completion"] | None:
    """What a model object says it takes, from its default prompt; None when unknown."""
    prompt = None if model is None or isinstance(model, str) else model.default_prompt
    if isinstance(prompt, CompletionPrompt):
        return "completion"
    if isinstance(prompt, ChatPrompt):
        return "chat"
    return None


class ModelAsker:
    """Asks a model an estimator's question, as chat messages or as a completion prompt.

    `model` is the model to ask: None for the one that wrote the answer, a router model's name,
    or a Model object. `style="auto"` follows the model object's `default_prompt` (or `chat`
    flag) when there is an object; a model known only by name is asked in chat form first and,
    if it refuses chat messages (a base model without a chat template raises
    PermanentModelError), asked again with a prompt, which is then remembered for that model.
    """

    def __init__(self, model: Model | str | None, style: PromptStyle = "auto") -> None:
        if style not in STYLES:
            raise ConfigError(
                f"style={style!r} is not a prompt style; use 'auto' (follow the model), 'chat' "
                "(instruction-tuned models) or 'completion' (base models prompted few-shot)"
            )
        self.model = model
        self.style: PromptStyle = style
        self._learned: dict[str, Literal["chat", "completion"]] = {}

    @property
    def label(self) -> str | None:
        """The asked model's name, or None when it is the model that wrote the answer."""
        if self.model is None:
            return None
        return self.model if isinstance(self.model, str) else self.model.name

    def target_name(self, attempt: Attempt) -> str:
        return self.label or attempt.candidate.model

    async def ask(
        self, attempt: Attempt, render: Callable[[bool], GenerationRequest]
    ) -> Completion:
        """Send `render(chat)` to the model and return its first completion."""
        name = self.target_name(attempt)
        style = self.style if self.style != "auto" else _style_of(self.model)
        style = style or self._learned.get(name)
        if style is not None:
            return await self._send(attempt, render(style == "chat"))
        try:
            completion = await self._send(attempt, render(True))
        except (ContextOverflowError, ModelNotFoundError):
            raise
        except PermanentModelError as chat_error:
            try:
                completion = await self._send(attempt, render(False))
            except PermanentModelError as prompt_error:
                raise EstimatorError(
                    f"model '{name}' refused the question both as chat messages ({chat_error}) "
                    f"and as a prompt ({prompt_error}); pass style='chat' or 'completion' to "
                    "pick one"
                ) from prompt_error
            self._learned[name] = "completion"
            return completion
        self._learned[name] = "chat"
        return completion

    async def _send(self, attempt: Attempt, request: GenerationRequest) -> Completion:
        generation = await attempt.ask(request, self.model)
        return generation.completions[0]


class AskingEstimator(EstimatorBase):
    """An estimator that asks a model about the answer (through `asker`) and scores the reply.

    Subclasses write `_request(attempt, chat)`, the question in chat or completion form, and
    `score(completion, model)`, the score of the reply of the model named `model`.
    """

    asker: ModelAsker

    @abstractmethod
    def _request(self, attempt: Attempt, chat: bool) -> GenerationRequest:
        """The question about the attempt's answer, as chat messages or as a prompt."""

    @abstractmethod
    def score(self, completion: Completion, model: str) -> Score:
        """The score of the asked model's reply."""

    async def aestimate(self, attempt: Attempt) -> Score:
        completion = await self.asker.ask(attempt, lambda chat: self._request(attempt, chat))
        return self.score(completion, self.asker.target_name(attempt))


# --- reading a stated confidence --------------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?|\.\d+)"
_NUMERIC = re.compile(
    r"(?<!\w)(?:"
    # a range such as "80-90%" or "0% to 100%"
    rf"(?P<lo>{_NUM})\s*%?\s*(?:-|–|to)\s*(?P<hi>{_NUM})\s*(?P<rpct>%|percent\b)?"
    # a fraction such as "8/10" or "85 out of 100"
    rf"|(?P<num>{_NUM})\s*(?:/|out\s+of\b)\s*(?P<den>{_NUM})"
    # a percentage, or a bare number
    rf"|(?P<value>{_NUM})\s*(?P<pct>%|percent\b)?"
    r")"
)
_LEADING_NUMBER = re.compile(rf"^[\W_]*(?:confidence\w*\W*)?{_NUM}")
_NEGATED = re.compile(r"(?:\bnot|n't|\bcannot|\bnever)\s+(?:be\s+)?(?:\w+\s+)?$")
_WIDEST_RANGE = 0.2  # a range wider than 20 points is the scale echoed back, not an answer

_REFUSAL = re.compile(
    r"\b(?:as an ai|i cannot|i can't|i can not|i am unable|i'm unable|unable to|"
    r"i don't know|i do not know|no way to (?:know|tell)|i won't|i will not|"
    r"not able to|impossible to (?:say|tell|know|determine)|sorry)\b"
)
_INTERJECTION = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok)\s*[!,.:;]+\s*")

# Words and phrases people use for degrees of belief, mapped to probabilities. Loosely after
# surveys of how readers interpret probability words ("almost certain" ~ 0.95, "likely" ~ 0.7,
# "unlikely" ~ 0.2); confidence levels ("very high" ... "very low") are spread evenly.
_WORDS: dict[str, float] = {
    # certainty
    "certain": 0.95,
    "certainly": 0.95,
    "definitely": 0.95,
    "absolutely": 0.95,
    "absolutely sure": 0.95,
    "completely sure": 0.95,
    "completely confident": 0.95,
    "extremely confident": 0.95,
    "extremely high": 0.95,
    "almost certain": 0.9,
    "almost certainly": 0.9,
    "nearly certain": 0.9,
    "very high": 0.9,
    "very confident": 0.9,
    "highly confident": 0.9,
    "very likely": 0.9,
    "highly likely": 0.9,
    "very sure": 0.9,
    # leaning yes
    "high": 0.8,
    "confident": 0.8,
    "sure": 0.8,
    "pretty sure": 0.8,
    "quite sure": 0.8,
    "quite confident": 0.8,
    "likely": 0.7,
    "probably": 0.7,
    "fairly confident": 0.7,
    "reasonably confident": 0.7,
    "moderately high": 0.7,
    "fairly high": 0.7,
    # no lean either way
    "medium": 0.5,
    "moderate": 0.5,
    "moderately confident": 0.5,
    "somewhat confident": 0.5,
    "maybe": 0.5,
    "possibly": 0.5,
    "perhaps": 0.5,
    "unsure": 0.5,
    "not sure": 0.5,
    "uncertain": 0.5,
    "not certain": 0.5,
    "fifty-fifty": 0.5,
    "neutral": 0.5,
    # leaning no
    "moderately low": 0.3,
    "fairly low": 0.3,
    "somewhat low": 0.3,
    "probably not": 0.3,
    "not very confident": 0.3,
    "not very likely": 0.3,
    "doubtful": 0.3,
    "low": 0.2,
    "unlikely": 0.2,
    "not likely": 0.2,
    "not confident": 0.2,
    "very low": 0.1,
    "very unlikely": 0.1,
    "highly unlikely": 0.1,
    "not confident at all": 0.1,
    "extremely low": 0.05,
    "extremely unlikely": 0.05,
    "almost impossible": 0.05,
    "no chance": 0.05,
    "definitely not": 0.05,
    "absolutely not": 0.05,
    "not at all": 0.05,
    "certainly not": 0.05,
    "impossible": 0.02,
}
_WORD_PATTERN = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(re.escape(p) for p in sorted(_WORDS, key=len, reverse=True))
    + r")(?![\w-])"
)


def _in_unit(value: float) -> float | None:
    return value if 0.0 <= value <= 1.0 and math.isfinite(value) else None


def _bare(text: str) -> float | None:
    """A number without a unit: a probability if it has a decimal point and is <= 1, else a
    percentage (the prompts ask for 0 to 100, so "85" is 85% and "1" is 1%)."""
    value = float(text)
    if "." in text and value <= 1.0:
        return value
    return _in_unit(value / 100.0)


def _range(match: re.Match[str]) -> float | None:
    if match["rpct"]:
        lo, hi = _in_unit(float(match["lo"]) / 100), _in_unit(float(match["hi"]) / 100)
    else:
        lo, hi = _bare(match["lo"]), _bare(match["hi"])
    if lo is None or hi is None or not 0.0 <= hi - lo <= _WIDEST_RANGE:
        return None
    return (lo + hi) / 2


def _numeric(text: str) -> tuple[bool, float | None]:
    """(whether the text states a number, the confidence it states or None if out of scale).

    Percentages, fractions and ranges are marked as confidences and win over bare numbers.
    Ranges too wide to be an answer and negated numbers ("not 100% sure") are skipped.
    """
    marked: list[float | None] = []
    bare: list[float | None] = []
    for match in _NUMERIC.finditer(text):
        if _NEGATED.search(text[: match.start()]):
            continue
        negative = match.start() > 0 and text[match.start() - 1] in "-−"
        if match["lo"] is not None:
            value = _range(match)
            if value is not None:
                marked.append(value)
        elif match["num"] is not None:
            numerator, denominator = float(match["num"]), float(match["den"])
            ok = denominator > 0 and 0 <= numerator <= denominator and not negative
            marked.append(numerator / denominator if ok else None)
        elif match["pct"]:
            marked.append(None if negative else _in_unit(float(match["value"]) / 100))
        else:
            bare.append(None if negative else _bare(match["value"]))
    if marked:
        return True, next((v for v in marked if v is not None), None)
    if not bare:
        return False, None
    if len(bare) == 1 or _LEADING_NUMBER.match(text):
        return True, bare[0]
    return True, None  # several bare numbers, none marked: too ambiguous to read


def parse_confidence(text: str) -> float | None:
    """The confidence a reply states, in [0, 1], or None when it states none.

    Numbers win over words: a percentage ("85%", "85 %", "85 percent"), a fraction ("8/10",
    "85/100", "8 out of 10"), a narrow range ("80-90%", read as its midpoint), or a bare number
    ("0.85", ".85" as probabilities; "85" as a percentage). A bare number counts only when it
    leads the reply or is the only one. A number outside its scale ("150%", "12/10", "-5"), a
    range wider than 20 points ("0% to 100%": the scale echoed back), or a negated one ("not
    100% sure") is no confidence. Without a number, refusals ("I cannot...", "I don't know")
    give None, and words map to probabilities: "certain" 0.95, "very high" 0.9, "high" 0.8,
    "likely" 0.7, "medium" and "I'm not sure" 0.5, "low" 0.2, "very low" 0.1.
    """
    lowered = _INTERJECTION.sub("", text.lower().replace("’", "'")).strip()
    if not lowered:
        return None
    found, value = _numeric(lowered)
    if found:
        return value
    if _REFUSAL.search(lowered):
        return None
    match = _WORD_PATTERN.search(lowered)
    return _WORDS[match.group(0)] if match else None


# --- the estimator ----------------------------------------------------------------------------

VERBAL_INSTRUCTION = (
    "How confident are you that the proposed answer is correct? "
    "Answer with a number between 0 and 100."
)
VERBAL_CUE = "Confidence that the proposed answer is correct (0-100%):"


class VerbalizedConfidence(AskingEstimator):
    """Asks the model how confident it is that the answer is correct, and parses the reply.

    `model` is who is asked: None for the model that wrote the answer (self-assessment), a
    router model's name, or a Model object. Chat models get an instruction; base models a
    few-shot prompt of graded examples (see `ModelAsker` for how `style` is chosen). A reply
    that states no readable confidence makes the score "unavailable", quoting the reply.
    """

    needs: Needs = NOTHING

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        style: PromptStyle = "auto",
        max_tokens: int = 16,
    ) -> None:
        self.max_tokens = check_range(
            "VerbalizedConfidence", "max_tokens", max_tokens, 1, integer=True
        )
        self.asker = ModelAsker(model, style)
        label = self.asker.label
        self.name = f"verbal_{label}" if label else "verbal"

    def _request(self, attempt: Attempt, chat: bool) -> GenerationRequest:
        if chat:
            return GenerationRequest(
                messages=chat_request(attempt, VERBAL_INSTRUCTION), max_tokens=self.max_tokens
            )
        prompt = few_shot_prompt(attempt, VERBAL_CUE, lambda e: f"{e.confidence}%")
        return GenerationRequest(prompt=prompt, max_tokens=self.max_tokens, stop=("\n",))

    def score(self, completion: Completion, model: str) -> Score:
        """The confidence the reply states."""
        reply = completion.text.strip()
        confidence = parse_confidence(reply)
        if confidence is None:
            raise EstimatorUnavailable(
                f"{self.name}: no confidence could be read in {model}'s reply {quote(reply)}; "
                "small models often ignore the instruction: try a larger model, or a "
                "logprob-based estimator"
            )
        return Score(
            estimator=self.name,
            value=confidence,
            confidence=confidence,
            detail=f"said {quote(reply)}",
        )

    def __repr__(self) -> str:
        return f"VerbalizedConfidence(model={self.asker.label!r})"

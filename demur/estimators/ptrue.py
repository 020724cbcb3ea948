"""P(True): the model grades its own answer, read from the probability it gives to "True".

After Kadavath et al. (2022), "Language Models (Mostly) Know What They Know": the model sees
the question and the proposed answer, is asked "Is the proposed answer: (A) True (B) False",
and the probability of its next token being "True" (or "A") rather than "False" (or "B") is
the confidence. One token is generated; the top-20 alternatives carry the mass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from demur.errors import EstimatorUnavailable
from demur.estimators.logprob import invalid_logprobs
from demur.estimators.verbal import (
    AskingEstimator,
    ModelAsker,
    PromptStyle,
    chat_request,
    few_shot_prompt,
    quote,
)
from demur.protocols import NOTHING, Attempt, Needs
from demur.types import Completion, GenerationRequest, Score, TokenAlternative

if TYPE_CHECKING:
    from demur.protocols import Model

TRUE_WORDS = frozenset({"true", "a", "yes", "correct"})
FALSE_WORDS = frozenset({"false", "b", "no", "incorrect"})
TOP_K = 20


def normalize_token(token: str) -> str:
    """A token as a word: case and surrounding spaces and punctuation dropped (" (A)" -> "a")."""
    return token.strip().strip("()[]{}<>*_\"'`.,:;!?").strip().lower()


def binary_mass(
    alternatives: Iterable[TokenAlternative],
    positive: frozenset[str],
    negative: frozenset[str],
) -> tuple[float, float]:
    """The probability mass of tokens meaning `positive` and of those meaning `negative`.

    Variants of a word (" True", "True", "true") are distinct tokens; their masses add up.
    """
    yes = no = 0.0
    for alternative in alternatives:
        word = normalize_token(alternative.token)
        if word in positive:
            yes += math.exp(alternative.logprob)
        elif word in negative:
            no += math.exp(alternative.logprob)
    return yes, no


PTRUE_QUESTION = "Is the proposed answer:\n (A) True\n (B) False\nThe proposed answer is:"
PTRUE_INSTRUCTION = f"{PTRUE_QUESTION}\n\nReply with one word: True or False."


class PTrue(AskingEstimator):
    """P(True) self-evaluation: the probability the model gives to "the answer is True".

    `model` is who is asked: None for the model that wrote the answer (as in the paper), a
    router model's name, or a Model object. Confidence is the mass of the tokens meaning true
    ("True", " True", "A", "Yes", ...) over that of the tokens meaning true or false, among the
    first generated token's top-20 alternatives. It is "unavailable" when the backend gives no
    logprobs, or when neither kind of token is among the top 20.
    """

    needs: Needs = NOTHING  # it asks for logprobs on its own call, not on the answer's

    def __init__(self, model: Model | str | None = None, *, style: PromptStyle = "auto") -> None:
        self.asker = ModelAsker(model, style)
        label = self.asker.label
        self.name = f"ptrue_{label}" if label else "ptrue"

    def _request(self, attempt: Attempt, chat: bool) -> GenerationRequest:
        if chat:
            return GenerationRequest(
                messages=chat_request(attempt, PTRUE_INSTRUCTION),
                max_tokens=1,
                logprobs=True,
                top_logprobs=TOP_K,
            )
        prompt = few_shot_prompt(
            attempt, PTRUE_QUESTION, lambda e: "True" if e.correct else "False"
        )
        return GenerationRequest(prompt=prompt, max_tokens=1, logprobs=True, top_logprobs=TOP_K)

    def score(self, completion: Completion, model: str) -> Score:
        """The P(True) score of the grader's one-token reply."""
        if completion.tokens is None:
            raise EstimatorUnavailable(
                f"{self.name} reads token probabilities, and '{model}' returned no logprobs; use "
                "a backend that gives them with top-k alternatives (LlamaCppModel, or an "
                "OpenAI-compatible server with logprobs), or VerbalizedConfidence, which reads text"
            )
        if not completion.tokens:
            raise EstimatorUnavailable(
                f"{self.name}: '{model}' ended its reply at once, leaving no token to read"
            )
        first = completion.tokens[0]
        if not first.top:
            raise EstimatorUnavailable(
                f"{self.name} needs the top-{TOP_K} alternatives of the reply's token, and "
                f"'{model}' returned only the chosen one"
            )
        invalid = invalid_logprobs((first,))
        if invalid is not None:
            return Score(estimator=self.name, status="failed", detail=invalid)
        true, false = binary_mass(first.top, TRUE_WORDS, FALSE_WORDS)
        if true + false <= 0.0:
            raise EstimatorUnavailable(
                f"{self.name}: neither True nor False is among the top {len(first.top)} tokens "
                f"of '{model}' (it replied {quote(completion.text)}); the model does not follow "
                "the True/False format"
            )
        probability = true / (true + false)
        return Score(
            estimator=self.name,
            value=probability,
            confidence=probability,
            detail=f"P(true)={true:.3g}, P(false)={false:.3g} in the top {len(first.top)}",
        )

    def __repr__(self) -> str:
        return f"PTrue(model={self.asker.label!r})"

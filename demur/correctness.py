"""Is an answer right? Normalised comparison of a short answer against gold answers.

Graders, by name: "exact" (normalised exact match with any alias), "contains" (a gold answer
appears in the answer), "f1" (token F1 with some alias >= a threshold), and "auto" (contains
or F1, the default: short answers embedded in a sentence still count). A model can grade too:
see `demur.evaluation.grading.JudgeGrader`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from demur.errors import ConfigError, did_you_mean

GraderName = Literal["auto", "exact", "contains", "f1"]
GRADERS: tuple[str, ...] = ("auto", "exact", "contains", "f1")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "‘’“”–—")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (SQuAD-style)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(answer: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation."""
    predicted, expected = normalize_answer(answer).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected or common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def contains_answer(answer: str, gold: str) -> bool:
    """True when the normalised gold answer appears, on word boundaries, in the answer."""
    needle, haystack = normalize_answer(gold), normalize_answer(answer)
    return bool(needle) and f" {needle} " in f" {haystack} "


def is_correct(answer: str | None, golds: Sequence[str], *, f1_threshold: float = 0.6) -> bool:
    """Correct when the answer contains a gold answer or overlaps one with token F1 >= threshold."""
    if not answer or not answer.strip():
        return False
    return any(
        contains_answer(answer, gold) or token_f1(answer, gold) >= f1_threshold for gold in golds
    )


def exact_match(answer: str, gold: str) -> bool:
    """Equal after normalisation."""
    return normalize_answer(answer) == normalize_answer(gold)


def check_grader(method: str) -> None:
    """ConfigError unless `method` names a grader."""
    if method not in GRADERS:
        raise ConfigError(
            f"unknown grader '{method}'.{did_you_mean(method, GRADERS)} "
            f"Use one of: {', '.join(GRADERS)} (or a judge model)."
        )


def grade(
    answer: str | None,
    golds: Sequence[str],
    method: str = "auto",
    *,
    f1_threshold: float = 0.6,
) -> bool:
    """Grade an answer against gold answers (aliases) with the named method."""
    check_grader(method)
    if not answer or not answer.strip():
        return False
    if method == "auto":
        return is_correct(answer, golds, f1_threshold=f1_threshold)
    if method == "exact":
        return any(exact_match(answer, gold) for gold in golds)
    if method == "contains":
        return any(contains_answer(answer, gold) for gold in golds)
    return any(token_f1(answer, gold) >= f1_threshold for gold in golds)

"""Groundedness: how far the passages an answer was written from support it.

An answer that states what its passages say is more likely right than one the model added
from memory or made up. Three methods, by name:

- "lexical": the share of the answer's content words found in the passages (no model);
- "embedding": the best cosine (clipped to [0, 1]) between the answer, stated as a claim, and
  a passage sentence;
- "judge": the probability a model gives to "yes" when asked whether the passages support the
  answer, read from the top-20 logprobs of its one-token reply.

The first two run in-process and offer a synchronous `estimate`; the judge asks a model. Each
is unavailable when the answer has no passages or is empty; an answer that declines to answer
("I don't know", "the passage does not say") scores 0, since it states nothing grounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

from demur.bases import EstimatorBase
from demur.errors import ConfigError, EstimatorUnavailable, unknown_name
from demur.estimators.judge import NO_WORDS, YES_WORDS, parse_verdict
from demur.estimators.ptrue import TOP_K, binary_mass
from demur.estimators.similarity import check_similarity, resolve_embedder, similarities_to
from demur.estimators.verbal import (
    GRADED_EXAMPLES,
    ModelAsker,
    PromptStyle,
    grading_body,
    quote,
)
from demur.protocols import NOTHING, Attempt, Embedder, Needs
from demur.types import Completion, GenerationRequest, Message, Score

if TYPE_CHECKING:
    from demur.protocols import Model

Method = Literal["lexical", "embedding", "judge"]
METHODS: tuple[Method, ...] = get_args(Method)
DEFAULT_EMBEDDER = "minilm-l6"

# --- words ------------------------------------------------------------------------------------

# Function words carry no facts; a passage contains them whatever the answer says.
_STOPWORD_LIST = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could d did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just ll m me more most my myself no nor not of off on once only or other our ours
    ourselves out over own re s same she should so some such t than that the their theirs them
    themselves then there these they this those through to too under until up ve very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves
"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())

# A number (digits with inner separators: 5,895 or 3.14) or a run of letters.
_WORD = re.compile(r"\d+(?:[.,:]\d+)*|[^\W\d_]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# How many words an answer may have and still count as supported when a passage contains it
# verbatim: "The Who" is all stopwords, yet a passage naming the band supports it.
SHORT_ANSWER = 5

_REFUSAL = re.compile(
    r"\b(?:"
    r"i (?:do not|don't|cannot|can't|can not|am not able to) "
    r"(?:know|say|tell|answer|determine|find)"
    r"|i(?: am|'m) (?:unable|not sure|not certain)"
    r"|unable to (?:answer|determine|find|say|tell)"
    r"|(?:is|are) not (?:mentioned|stated|given|provided|specified|found|available|known)"
    r"|(?:does not|doesn't|do not|don't) (?:mention|say|state|specify|contain|provide|tell)"
    r"|no (?:information|mention|answer)"
    r"|cannot be (?:determined|answered|found|known)"
    r"|unanswerable|insufficient (?:information|context)|not enough (?:information|context)"
    r")\b"
)
_YES_NO = frozenset({"yes", "no", "true", "false"})


def words(text: str) -> list[str]:
    """The words of `text`: lowercased, punctuation dropped, numbers kept ("5,895" -> "5895")."""
    return _WORD.findall(_THOUSANDS.sub("", text.lower()))


def content_words(text: str) -> list[str]:
    """The words of `text` that carry content: stopwords dropped, numbers always kept."""
    return [w for w in words(text) if w not in STOPWORDS]


def is_refusal(text: str) -> bool:
    """True when the answer declines to answer ("I don't know", "not mentioned in the text")."""
    return _REFUSAL.search(text.lower().replace("’", "'")) is not None


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """True when `needle` occurs in `haystack` as a run of consecutive words."""
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def lexical_support(question: str, answer: str, passages: Sequence[str]) -> tuple[float, str]:
    """The share of the answer's content words found in the passages, in [0, 1], and why.

    Words the answer repeats from the question are left out when it has others: retrieval
    found the passages by those very words, so they would make any answer look supported. A
    short answer (at most SHORT_ANSWER words) that a passage contains verbatim scores 1.
    """
    answer_words = words(answer)
    passage_words = [words(p) for p in passages]
    if len(answer_words) <= SHORT_ANSWER and any(_contains(p, answer_words) for p in passage_words):
        return 1.0, "a passage contains the answer verbatim"
    found = set().union(*passage_words)
    claimed = dict.fromkeys(content_words(answer))  # distinct, in order
    asked = set(content_words(question))
    new = [w for w in claimed if w not in asked]
    checked = new or list(claimed)
    if not checked:
        return 0.0, "the answer has no content word, and no passage contains it"
    missing = [w for w in checked if w not in found]
    share = 1.0 - len(missing) / len(checked)
    detail = f"{len(checked) - len(missing)} of {len(checked)} content words in the passages"
    if missing:
        detail += f"; missing: {', '.join(missing[:5])}" + (", ..." if len(missing) > 5 else "")
    return share, detail


# --- sentences --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of a passage: split after . ! or ? and at line breaks; empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def claim(question: str, answer: str) -> str:
    """The answer stated as a claim: the question followed by the answer."""
    return f"{question.strip()} {answer.strip()}"


# --- the judge's question ---------------------------------------------------------------------

SUPPORT_SYSTEM = (
    "You check whether a proposed answer to a question is supported by the passage: what the "
    "answer states must be stated in the passage or follow from it."
)
SUPPORT_INSTRUCTION = "Does the passage support the proposed answer? Reply with yes or no."
SUPPORT_CUE = "Does the passage support the proposed answer (yes or no)?"


def support_request(
    question: str, answer: str, passages: Sequence[str], chat: bool
) -> GenerationRequest:
    """The one-token yes/no question, in chat form or as a few-shot prompt for a base model."""
    body = grading_body(question, answer, "\n\n".join(passages))
    if chat:
        return GenerationRequest(
            messages=(
                Message(role="system", content=SUPPORT_SYSTEM),
                Message(role="user", content=f"{body}\n\n{SUPPORT_INSTRUCTION}"),
            ),
            max_tokens=1,
            logprobs=True,
            top_logprobs=TOP_K,
        )
    # Each worked example's passage supports its answer exactly when the answer is correct.
    shots = [
        grading_body(e.question, e.answer, e.context)
        + f"\n{SUPPORT_CUE} {'yes' if e.correct else 'no'}"
        for e in GRADED_EXAMPLES
    ]
    prompt = "\n\n".join([*shots, f"{body}\n{SUPPORT_CUE}"])
    return GenerationRequest(
        prompt=prompt, max_tokens=1, logprobs=True, top_logprobs=TOP_K, stop=("\n",)
    )


def read_support(completion: Completion) -> tuple[float, str] | None:
    """P(yes) over P(yes) + P(no) from the reply token's top-k, else 1.0 or 0.0 from its text.

    None when neither reading finds a yes or a no.
    """
    first = completion.tokens[0] if completion.tokens else None
    if first is not None and first.top:
        yes, no = binary_mass(first.top, YES_WORDS, NO_WORDS)
        if yes + no > 0.0:
            return yes / (yes + no), f"P(yes)={yes:.3g}, P(no)={no:.3g} in the top {len(first.top)}"
    verdict = parse_verdict(completion.text)
    if verdict is None:
        return None
    return float(verdict), f"said {quote(completion.text.strip())} (no usable logprobs)"


# --- the estimator ----------------------------------------------------------------------------


class Groundedness(EstimatorBase):
    """How far the candidate's passages support its answer, in [0, 1].

    `method` is "lexical" (content-word overlap), "embedding" (the best claim-to-sentence
    cosine, clipped to [0, 1], with `embedder`: an Embedder or a built-in's name, "minilm-l6"
    by default, whose model loads on first use) or "judge" (a model's P(yes) that the passages
    support the answer; `judge` is who is asked: None for the model that wrote the answer, a
    router model's name, or a Model object). The estimator is named `groundedness_<method>`,
    and `groundedness_judge_<name>` for a judge other than the answering model.

    The lexical and embedding methods run in-process and offer `estimate(attempt)`; for the
    judge `estimate` is None, so the router awaits `aestimate` under its estimator timeout.
    """

    needs: Needs = NOTHING

    def __init__(
        self,
        method: Method = "lexical",
        embedder: Embedder | str | None = None,
        judge: Model | str | None = None,
        *,
        style: PromptStyle = "auto",
    ) -> None:
        if method not in METHODS:
            raise unknown_name("groundedness method", method, METHODS)
        if embedder is not None and method != "embedding":
            raise ConfigError(
                f"Groundedness(method={method!r}) was given an embedder it does not use; pass "
                "method='embedding' or drop the embedder"
            )
        if judge is not None and method != "judge":
            raise ConfigError(
                f"Groundedness(method={method!r}) was given a judge it does not ask; pass "
                "method='judge' or drop the judge"
            )
        self.method: Method = method
        self.embedder: Embedder | None = None
        if method == "embedding":
            # load_embedder checks the packages now; the model itself loads on the first embed.
            self.embedder = resolve_embedder(embedder or DEFAULT_EMBEDDER)
            check_similarity("embedding", self.embedder)
        self.asker = ModelAsker(judge, style)
        label = self.asker.label
        self.name = f"groundedness_{method}" + (f"_{label}" if label else "")
        # The judge asks a model and the embedding method runs one in a worker thread; the
        # lexical methods compute in-process.
        self.in_process = method not in ("judge", "embedding")

    # --- inputs shared by every method ---

    def _inputs(self, attempt: Attempt) -> tuple[str, list[str]]:
        """The answer and the non-empty passage texts; unavailable when either is missing."""
        documents = attempt.candidate.documents
        if not documents:
            raise EstimatorUnavailable(
                f"{self.name} checks the answer against its passages, and this answer was "
                "written without any (closed-book); give the router a retriever or pass "
                "Query(context=...)"
            )
        passages = [d.text for d in documents if d.text.strip()]
        if not passages:
            raise EstimatorUnavailable(
                f"{self.name}: all {len(documents)} passages of this answer are empty"
            )
        answer = attempt.candidate.text.strip()
        if not answer:
            raise EstimatorUnavailable(
                f"{self.name}: the answer is empty; there is nothing to check"
            )
        if self.method != "judge" and answer.lower().strip(" .!") in _YES_NO:
            raise EstimatorUnavailable(
                f"{self.name} cannot tell whether passages support a bare {quote(answer)}: the "
                "word is not a fact to look up; use Groundedness(method='judge')"
            )
        return answer, passages

    def _refusal(self, answer: str) -> Score:
        return Score(
            estimator=self.name,
            value=0.0,
            confidence=0.0,
            detail=f"the answer {quote(answer)} declines to answer, so nothing in it is grounded",
        )

    # --- in-process methods ---

    def _score(self, attempt: Attempt) -> Score:
        answer, passages = self._inputs(attempt)
        if is_refusal(answer):
            return self._refusal(answer)
        question = attempt.query.question
        if self.method == "lexical":
            value, detail = lexical_support(question, answer, passages)
        else:
            assert self.embedder is not None
            sentences = [s for p in passages for s in split_sentences(p)]
            cosines = similarities_to(
                claim(question, answer), sentences, "embedding", self.embedder
            )
            best = int(cosines.argmax())
            value = float(cosines[best])
            detail = f"closest of {len(sentences)} sentences: {quote(sentences[best])}"
        return Score(
            estimator=self.name, value=value, confidence=min(1.0, max(0.0, value)), detail=detail
        )

    # --- the judge ---

    async def _ask_judge(self, attempt: Attempt) -> Score:
        answer, passages = self._inputs(attempt)
        if is_refusal(answer):
            return self._refusal(answer)
        question = attempt.query.question
        completion = await self.asker.ask(
            attempt, lambda chat: support_request(question, answer, passages, chat)
        )
        reading = read_support(completion)
        if reading is None:
            raise EstimatorUnavailable(
                f"{self.name}: no yes or no could be read in "
                f"{self.asker.target_name(attempt)}'s reply {quote(completion.text.strip())} "
                "or among its top tokens; try a larger judge model"
            )
        probability, detail = reading
        return Score(estimator=self.name, value=probability, confidence=probability, detail=detail)

    def estimate(self, attempt: Attempt) -> Score:
        if self.method == "judge":
            return super().estimate(attempt)
        return self._score(attempt)

    async def aestimate(self, attempt: Attempt) -> Score:
        if self.method == "judge":
            return await self._ask_judge(attempt)
        # EstimatorBase: on the loop when in-process (lexical), else in a worker thread.
        return await super().aestimate(attempt)

    def __repr__(self) -> str:
        if self.method == "embedding":
            assert self.embedder is not None
            return f"Groundedness(method='embedding', embedder={self.embedder.name!r})"
        if self.method == "judge":
            return f"Groundedness(method='judge', judge={self.asker.label!r})"
        return "Groundedness(method='lexical')"


__all__ = [
    "METHODS",
    "STOPWORDS",
    "Groundedness",
    "Method",
    "claim",
    "content_words",
    "is_refusal",
    "lexical_support",
    "read_support",
    "split_sentences",
    "support_request",
    "words",
]

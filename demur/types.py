"""The core data types: what goes into a route, what each step records, and what comes out.

All are pydantic models, so they validate on the way in and serialise to JSON on the way out.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from demur.errors import InvalidQueryError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


# --- What goes in ----------------------------------------------------------------------------


class Message(_Frozen):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationOptions(_Frozen):
    """A caller's settings for the answer to one query; each left unset keeps the router's.

    `max_tokens`, `temperature` and `seed` replace the model's settings for the answer
    (samples drawn for estimators keep the router's `Sampling` temperature); `stop` sequences
    are added to the prompt's own.
    """

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        """`request` with these settings in place of the router's."""
        changes: dict[str, Any] = {}
        if self.max_tokens is not None:
            changes["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            changes["temperature"] = self.temperature
        if self.seed is not None:
            changes["seed"] = self.seed
        if self.stop:
            changes["stop"] = tuple(dict.fromkeys((*request.stop, *self.stop)))
        return request.model_copy(update=changes) if changes else request


class Query(_Frozen):
    """A question to route, with optional context passages supplied by the caller.

    `generation` carries the caller's settings for the answer (None: the router's own).
    """

    question: str
    context: tuple[str, ...] = ()
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    generation: GenerationOptions | None = None

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty; pass the text to answer, e.g. Query('...')")
        return value

    def __init__(self, question: str | None = None, /, **data: Any) -> None:
        if question is not None:
            data["question"] = question
        super().__init__(**data)

    @classmethod
    def coerce(cls, value: Query | str) -> Query:
        """A Query from a Query or a plain string; InvalidQueryError explains what is wrong."""
        if isinstance(value, Query):
            return value
        if not isinstance(value, str):
            raise InvalidQueryError(
                f"a query must be a str or demur.Query, got {type(value).__name__}"
            )
        if not value.strip():
            raise InvalidQueryError(
                "the question is empty; pass the text to answer, "
                "e.g. router.route('Who wrote Emma?')"
            )
        return cls(value)


# --- What retrieval returns -----------------------------------------------------------------


class Document(_Frozen):
    """A retrieved passage.

    `score` is the retriever's similarity to the query (cosine for embedding retrievers, higher
    is closer); `retriever` names the retriever (one per embedding model) that found it.
    """

    id: str
    text: str
    score: float | None = None
    source: str | None = None
    retriever: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Retrieval(_Frozen):
    """One retrieval: the query text sent, by which retriever, how many passages, what came back.

    `cutoff` is the similarity below which passages were dropped (a conformal cutoff), if any;
    `error` says why retrieval failed, in which case `documents` is empty; `note` records a
    fallback taken (another retriever for the query's language, passages dropped to fit).
    """

    query: str
    retriever: str
    k: int
    documents: tuple[Document, ...] = ()
    cutoff: float | None = None
    rewritten: bool = False
    error: str | None = None
    note: str | None = None
    duration_s: float = 0.0


# --- What a model returns --------------------------------------------------------------------


class TokenAlternative(_Frozen):
    """One of the top-k tokens the model considered at a position."""

    token: str
    logprob: float


class TokenLogprob(_Frozen):
    """A generated token, its log-probability, and the top-k alternatives when known."""

    token: str
    logprob: float
    top: tuple[TokenAlternative, ...] = ()


class Usage(_Frozen):
    """Token counts of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Completion(_Frozen):
    """One generated text; `tokens` is None when the backend gives no logprobs."""

    text: str
    tokens: tuple[TokenLogprob, ...] | None = None
    finish_reason: str | None = None


class GenerationRequest(_Frozen):
    """What the router asks a model for. Exactly one of `messages` and `prompt` is set."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    n: int = Field(default=1, ge=1)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    stop: tuple[str, ...] = ()
    seed: int | None = None


class Generation(_Frozen):
    """A model's answer to one GenerationRequest: `n` completions and what they cost.

    `model` is the router's name for the model; `response_model` the id the backend reported.
    """

    model: str
    completions: tuple[Completion, ...]
    usage: Usage = Usage()
    response_id: str | None = None
    response_model: str | None = None  # the model id the backend says answered, when it says


class Candidate(_Frozen):
    """An answer under consideration, with everything estimators need to score it.

    `samples` are extra answers drawn at a temperature, once per attempt, when an estimator
    asked for them; every estimator shares the same samples. `documents` are the passages the
    answer was written from (retrieved, or the caller's context); empty for a closed-book answer.
    """

    text: str
    model: str
    tokens: tuple[TokenLogprob, ...] | None = None
    samples: tuple[Completion, ...] = ()
    documents: tuple[Document, ...] = ()
    finish_reason: str | None = None
    usage: Usage = Usage()
    cost: float = 0.0
    response_id: str | None = None


# --- What estimators return ------------------------------------------------------------------

ScoreStatus = Literal["ok", "unavailable", "failed", "timeout"]


class Score(_Frozen):
    """One estimator's verdict on a candidate.

    `value` is the estimator's raw statistic (e.g. a mean logprob); `confidence` maps it into
    [0, 1], higher meaning more likely correct. Both are None unless `status` is "ok".
    `calls` counts the model calls the estimator made itself (shared samples not included).
    `error_type` names the exception behind a "failed" or "timeout" score; `detail` never
    holds an exception's message (it can quote the prompt), which the router logs instead.
    """

    estimator: str
    status: ScoreStatus = "ok"
    value: float | None = None
    confidence: float | None = None
    detail: str | None = None
    duration_s: float = 0.0
    calls: int = 0
    error_type: str | None = None

    @field_validator("confidence")
    @classmethod
    def _in_unit_interval(cls, value: float | None) -> float | None:
        if value is not None and not (0.0 <= value <= 1.0 and math.isfinite(value)):
            raise ValueError(f"confidence must lie in [0, 1], got {value}")
        return value

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --- What policies decide --------------------------------------------------------------------


class Accept(_Frozen):
    """Return the candidate of the given step (the latest one by default)."""

    kind: Literal["accept"] = "accept"
    step: int | None = None


class Escalate(_Frozen):
    """Ask another, usually stronger, model."""

    kind: Literal["escalate"] = "escalate"
    model: str

    def __init__(self, model: str | None = None, /, **data: Any) -> None:
        if model is not None:
            data["model"] = model
        super().__init__(**data)


class AskHuman(_Frozen):
    """Hand the question to the human review queue and return a pending verdict."""

    kind: Literal["ask_human"] = "ask_human"
    priority: int = 0


class RetrieveMore(_Frozen):
    """Retrieve again, differently, and answer again.

    Each field left as None keeps the router's setting: `k` passages (more than before),
    `retriever` (another embedding model), `cutoff` (keep every passage whose similarity clears
    the retriever's fitted conformal cutoff, up to `k`), `rewrite` (let the model rewrite the
    question into a search query first), `model` (which model answers; the current one by
    default).
    """

    kind: Literal["retrieve_more"] = "retrieve_more"
    k: int | None = Field(default=None, ge=1)
    retriever: str | None = None
    cutoff: bool = False
    rewrite: bool = False
    model: str | None = None


class Abstain(_Frozen):
    """Decline to answer, with a message for the user."""

    kind: Literal["abstain"] = "abstain"
    message: str | None = None

    def __init__(self, message: str | None = None, /, **data: Any) -> None:
        if message is not None:
            data["message"] = message
        super().__init__(**data)


Action = Annotated[
    Accept | Escalate | RetrieveMore | AskHuman | Abstain, Field(discriminator="kind")
]


class Decision(_Frozen):
    """A policy's choice of action, and why, in words a reviewer can read."""

    action: Action
    reason: str
    threshold: float | None = None


# --- What comes out --------------------------------------------------------------------------


class Branch(_Frozen):
    """One of several answers an attempt compared before choosing.

    Confident RAG makes one branch per embedding model; situated faithfulness makes a
    closed-book branch and a with-context branch. Each is scored on its own.
    """

    name: str
    candidate: Candidate | None = None
    scores: tuple[Score, ...] = ()
    confidence: float | None = None
    retrieval: Retrieval | None = None
    error: str | None = None
    error_type: str | None = None
    notes: tuple[str, ...] = ()
    latency_s: float = 0.0


class Step(_Frozen):
    """One model attempt in a route: the answer, its scores, and what the policy made of it.

    `calls` counts every model call the step made (the answer, samples, and estimators' own
    calls such as a judge); `cost` is what they cost together. `retrieval` records what was
    retrieved for the answer. When the attempt compared several answers, `branches` holds
    them all, `branch` names the one chosen, and `selection` says why. `notes` records what
    was changed to make the answer possible, such as a passage trimmed to fit the context.
    """

    index: int
    model: str
    candidate: Candidate | None = None
    retrieval: Retrieval | None = None
    branches: tuple[Branch, ...] = ()
    branch: str | None = None
    selection: str | None = None
    scores: tuple[Score, ...] = ()
    raw_confidence: float | None = None
    confidence: float | None = None
    calibrated: bool = False
    decision: Decision | None = None
    error: str | None = None
    error_type: str | None = None
    notes: tuple[str, ...] = ()
    retries: int = 0
    calls: int = 0
    latency_s: float = 0.0
    cost: float = 0.0


VerdictStatus = Literal["answered", "abstained", "pending"]


class StartChoice(_Frozen):
    """Where a pre-generation stage started the route, and why (see `demur.pregen`).

    `probabilities` are the predicted chances of each model's answer succeeding; `skipped`
    the cheaper models the route did not ask. The post-generation policy checked the answer
    all the same.
    """

    model: str
    skipped: tuple[str, ...] = ()
    probabilities: dict[str, float | None] = Field(default_factory=dict)
    reason: str = ""
    predictor: str | None = None
    error: str | None = None


class Verdict(_Frozen):
    """The outcome of a route.

    - "answered": `answer` holds the accepted text and `model` the model that wrote it.
    - "abstained": `answer` is None and `message` says why.
    - "pending": a person will answer; `ticket_id` identifies the review ticket.

    `start` says where a pre-generation stage started the route, when the router has one.
    """

    status: VerdictStatus
    answer: str | None = None
    message: str | None = None
    confidence: float | None = None
    calibrated: bool = False
    model: str | None = None
    ticket_id: str | None = None
    steps: tuple[Step, ...] = ()
    trace_id: str | None = None
    cost: float = 0.0
    latency_s: float = 0.0
    start: StartChoice | None = None

    @property
    def action(self) -> str:
        """The final action's kind: accept, ask_human or abstain."""
        last = self.steps[-1].decision if self.steps else None
        return last.action.kind if last is not None else "abstain"

    @property
    def escalated(self) -> bool:
        """True when more than one model was asked."""
        return len(self.steps) > 1

    @property
    def text(self) -> str:
        """What to show the user: the answer, or the message that explains why there is none."""
        if self.status == "answered":
            return self.answer or ""
        return self.message or ""

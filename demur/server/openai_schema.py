"""The subset of OpenAI's chat completions API the gateway speaks, and how it maps onto demur.

Requests: `model` and `messages` are required; `model` picks the ladder (see
`demur.server.ladders`). `max_tokens` (or `max_completion_tokens`), `temperature`, `stop` and
`seed` are honoured: they apply to every model's answer in the route (`Query.generation`).
What the gateway cannot honour is refused (400, naming the field) unless left at OpenAI's
default: `top_p` other than 1, non-zero penalties, `logit_bias`, `logprobs`/`top_logprobs`,
`n` other than 1, tools, function calls and structured outputs. Unknown fields are ignored.

Mapping onto a demur Query: the last message must come from the user and is the question
(text parts of a multi-part content are joined by newlines). demur's prompts write their own
system message and see one question, so the caller's system/developer messages go to
`Query.metadata["system"]` and earlier turns to `Query.metadata["history"]`, where custom
prompts, estimators or policies may read them; the built-in ones do not. Passages to answer
from go in the extra body field `context` (a string or a list of strings), e.g. with the
openai client: `extra_body={"context": ["Emma is a novel by Jane Austen."]}`.

Responses are standard `chat.completion` objects (or `chat.completion.chunk`s when
streaming) with one extra top-level field, `demur`, describing the verdict.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from demur.server.reasons import step_reason
from demur.types import GenerationOptions, Query, Step, Verdict

MAX_STOP_SEQUENCES = 4
MAX_SEED = 2**63 - 1


class RequestProblem(Exception):
    """The request is well-formed JSON but asks for something the gateway cannot do."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        self.param = param
        self.code = code
        super().__init__(message)


# --- requests --------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Unknown fields are accepted and ignored, as OpenAI's API evolves faster than ours."""

    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self, where: str) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for j, part in enumerate(self.content):
            if part.type != "text" or part.text is None:
                raise RequestProblem(
                    f"content part of type '{part.type}' is not supported; the demur gateway "
                    "answers text questions only",
                    param=f"{where}.content[{j}]",
                )
            texts.append(part.text)
        return "\n".join(texts)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """A `POST /v1/chat/completions` body."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    user: str | None = None
    context: list[str] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("context", mode="before")
    @classmethod
    def _one_passage(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def to_query(self, request_id: str) -> Query:
        """The demur Query this request asks; RequestProblem says what cannot be routed."""
        if self.n != 1:
            raise RequestProblem("n must be 1: the gateway returns one gated answer", "n")
        if self.tools or self.functions:
            raise RequestProblem(
                "tools and functions are not supported; the demur gateway answers in text",
                "tools" if self.tools else "functions",
            )
        if self.tool_choice not in (None, "none"):
            raise RequestProblem("tool_choice is not supported", "tool_choice")
        self._refuse_unsupported_sampling()
        generation = self._generation()
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise RequestProblem(
                f"response_format '{kind}' is not supported; only text answers are gated",
                "response_format",
            )
        *earlier, last = self.messages
        where = f"messages[{len(self.messages) - 1}]"
        if last.role != "user":
            raise RequestProblem(
                f"the last message must be the user's question, got role '{last.role}'",
                f"{where}.role",
            )
        question = last.text(where)
        if not question.strip():
            raise RequestProblem("the question (the last user message) is empty", where)
        system: list[str] = []
        history: list[dict[str, str]] = []
        for i, message in enumerate(earlier):
            text = message.text(f"messages[{i}]")
            if message.role in ("system", "developer"):
                system.append(text)
            else:
                history.append({"role": message.role, "content": text})
        metadata: dict[str, Any] = {}
        if system:
            metadata["system"] = "\n".join(system)
        if history:
            metadata["history"] = history
        if self.user:
            metadata["user"] = self.user
        return Query(
            question,
            context=tuple(self.context or ()),
            id=request_id,
            metadata=metadata,
            generation=generation,
        )

    def _refuse_unsupported_sampling(self) -> None:
        """400 for a setting the gateway would otherwise ignore; OpenAI's defaults pass."""
        unsupported = {
            "top_p": self.top_p not in (None, 1),
            "frequency_penalty": self.frequency_penalty not in (None, 0),
            "presence_penalty": self.presence_penalty not in (None, 0),
            "logit_bias": bool(self.logit_bias),
            "logprobs": bool(self.logprobs),
            "top_logprobs": self.top_logprobs not in (None, 0),
        }
        for field, given in unsupported.items():
            if given:
                raise RequestProblem(
                    f"{field} is not supported: the demur gateway cannot apply it to the "
                    f"router's models or return it; leave {field} out",
                    field,
                    "unsupported_parameter",
                )

    def _generation(self) -> GenerationOptions | None:
        """The caller's settings for the answer, each range-checked; None when none is given."""
        max_tokens, field = self.max_completion_tokens, "max_completion_tokens"
        if max_tokens is None:
            max_tokens, field = self.max_tokens, "max_tokens"
        elif self.max_tokens is not None and self.max_tokens != max_tokens:
            raise RequestProblem(
                f"max_tokens ({self.max_tokens}) and max_completion_tokens ({max_tokens}) "
                "disagree; send one of them",
                "max_tokens",
            )
        if max_tokens is not None and max_tokens < 1:
            raise RequestProblem(f"{field} must be at least 1, got {max_tokens}", field)
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise RequestProblem(
                f"temperature must lie in [0, 2], got {self.temperature}", "temperature"
            )
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise RequestProblem(f"seed must lie in [0, 2**63 - 1], got {self.seed}", "seed")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        if len(stop) > MAX_STOP_SEQUENCES:
            raise RequestProblem(
                f"stop takes at most {MAX_STOP_SEQUENCES} sequences, got {len(stop)}", "stop"
            )
        for i, sequence in enumerate(stop):
            if not sequence:
                where = "stop" if isinstance(self.stop, str) else f"stop[{i}]"
                raise RequestProblem("a stop sequence must not be empty", where)
        if max_tokens is None and self.temperature is None and not stop and self.seed is None:
            return None
        return GenerationOptions(
            max_tokens=max_tokens, temperature=self.temperature, stop=tuple(stop), seed=self.seed
        )


# --- responses -------------------------------------------------------------------------------


class StepSummary(BaseModel):
    """One model attempt, as the response reports it (errors by type only)."""

    index: int
    model: str
    confidence: float | None
    action: str | None
    reason_code: str | None = None
    reason: str | None
    error_type: str | None = None
    latency_s: float

    @classmethod
    def of(cls, step: Step) -> StepSummary:
        code, reason = step_reason(step)
        return cls(
            index=step.index,
            model=step.model,
            confidence=step.confidence,
            action=step.decision.action.kind if step.decision else None,
            reason_code=code,
            reason=reason,
            error_type=step.error_type,
            latency_s=round(step.latency_s, 6),
        )


class DemurInfo(BaseModel):
    """The `demur` field: what the router decided, and where to find the trace.

    A pending verdict's `poll` is the path that returns the person's answer once given.
    """

    action: str
    status: str
    confidence: float | None
    calibrated: bool
    model: str | None
    trace_id: str | None
    ticket_id: str | None
    poll: str | None = None
    escalated: bool
    cost: float
    latency_s: float
    steps: list[StepSummary]

    @classmethod
    def of(cls, verdict: Verdict) -> DemurInfo:
        return cls(
            action=verdict.action,
            status=verdict.status,
            confidence=verdict.confidence,
            calibrated=verdict.calibrated,
            model=verdict.model,
            trace_id=verdict.trace_id,
            ticket_id=verdict.ticket_id,
            poll=ticket_path(verdict.ticket_id) if verdict.status == "pending" else None,
            escalated=verdict.escalated,
            cost=verdict.cost,
            latency_s=round(verdict.latency_s, 6),
            steps=[StepSummary.of(s) for s in verdict.steps],
        )


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, verdict: Verdict) -> CompletionUsage:
        """The tokens of every answer the route generated, all models together."""
        prompt = completion = 0
        for step in verdict.steps:
            candidates = [b.candidate for b in step.branches] if step.branches else [step.candidate]
            for candidate in candidates:
                if candidate is not None:
                    prompt += candidate.usage.input_tokens
                    completion += candidate.usage.output_tokens
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    demur: DemurInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    demur: DemurInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TicketAnswer(BaseModel):
    """`GET /v1/demur/tickets/{id}`: a hand-off to a person, and their answer once given.

    `status` is "pending" until a reviewer resolves the ticket, then "answered" (`content` is
    the answer; `model` the approved candidate's model, or "human" for the reviewer's own
    text) or "abstained" (`content` says why there is no answer).
    """

    id: str
    object: Literal["demur.ticket"] = "demur.ticket"
    status: Literal["pending", "answered", "abstained"]
    content: str | None = None
    model: str | None = None
    created: int
    resolved: int | None = None
    poll: str


def ticket_path(ticket_id: str | None) -> str | None:
    """Where a client polls for the answer to a hand-off."""
    return f"/v1/demur/tickets/{ticket_id}" if ticket_id else None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    demur: DemurInfo | None = None


__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "DemurInfo",
    "ErrorBody",
    "ModelList",
    "RequestProblem",
    "TicketAnswer",
    "ticket_path",
]

"""The subset of OpenAI's chat completions API the gateway speaks, and how it maps onto demur.

Requests: `model` and `messages` are required; sampling settings (`temperature`,
`max_tokens`, `top_p`, `seed`, `stop`...) are accepted and ignored, as are unknown fields,
because the router's config decides how each model is called. `n` must be 1. Tools, function
calls and structured outputs are refused (400): the gateway only answers questions in text.

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

from demur.types import Query, Verdict


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
        return Query(question, context=tuple(self.context or ()), id=request_id, metadata=metadata)


# --- responses -------------------------------------------------------------------------------


class StepSummary(BaseModel):
    """One model attempt, as the response reports it (errors by type only)."""

    index: int
    model: str
    confidence: float | None
    action: str | None
    reason: str | None
    error_type: str | None = None
    latency_s: float


class DemurInfo(BaseModel):
    """The `demur` field: what the router decided, and where to find the trace."""

    action: str
    status: str
    confidence: float | None
    calibrated: bool
    model: str | None
    trace_id: str | None
    ticket_id: str | None
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
            escalated=verdict.escalated,
            cost=verdict.cost,
            latency_s=round(verdict.latency_s, 6),
            steps=[
                StepSummary(
                    index=s.index,
                    model=s.model,
                    confidence=s.confidence,
                    action=s.decision.action.kind if s.decision else None,
                    reason=s.decision.reason if s.decision else None,
                    error_type=s.error_type,
                    latency_s=round(s.latency_s, 6),
                )
                for s in verdict.steps
            ],
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
]

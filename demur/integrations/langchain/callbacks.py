"""A callback handler that scores and traces every model call in a chain or agent.

    scores = DemurCallbackHandler(estimators=[MeanTokenLogprob(), MinTokenProb()])
    chain.invoke(inputs, config={"callbacks": [scores]})
    scores.records[-1].confidence

Callbacks only observe. The handler scores each chat model or LLM answer when it ends, with
estimators that need no further model call (logprob estimators: the model must return
logprobs, e.g. `ChatOpenAI(logprobs=True)`), records a `demur.score` span under the
caller's active span with each estimator's score as an attribute and a
`gen_ai.evaluation.result` event (OpenTelemetry Logs API) per estimator, and keeps a
`ScoredCall` per answer. It never changes what the chain returns, never raises into it, and
cannot hold back a doubtful answer: to act on confidence (escalate, ask a person, abstain),
gate the model with `DemurRunnable` / `gate()` or an agent with `DemurMiddleware`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import metrics, trace
from opentelemetry._logs import LoggerProvider

from demur.errors import ConfigError
from demur.estimators.logprob import MeanTokenLogprob, MinTokenProb
from demur.integrations.langchain.messages import last_human_text, parse_logprobs
from demur.protocols import Attempt, Estimator
from demur.router.tracing import RouteTracing
from demur.scoring import CombineMethod, ScoreCombiner, score_in_process
from demur.types import Candidate, Query, Score

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredCall:
    """One model answer as the handler scored it.

    `confidence` combines the estimators' confidences (None when none could score);
    `below_threshold` is None without a threshold.
    """

    run_id: UUID
    parent_run_id: UUID | None
    model: str
    question: str
    answer: str
    scores: tuple[Score, ...]
    confidence: float | None
    below_threshold: bool | None
    trace_id: str | None


class DemurCallbackHandler(BaseCallbackHandler):
    """Scores and traces every model answer it sees; observes only (see the module docstring).

    `estimators` must compute in-process without model calls or samples (default: mean token
    logprob and min token probability). `threshold` only marks records as below it. The
    latest `keep` records are kept in `records`; `on_score` is called with each.
    """

    run_inline = True  # cheap, and in the caller's context, so spans nest under its span

    def __init__(
        self,
        estimators: Sequence[Estimator] | None = None,
        *,
        combine: CombineMethod | ScoreCombiner = "mean",
        threshold: float | None = None,
        keep: int = 1000,
        on_score: Callable[[ScoredCall], None] | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
    ) -> None:
        super().__init__()
        chosen = (
            tuple(estimators) if estimators is not None else (MeanTokenLogprob(), MinTokenProb())
        )
        for estimator in chosen:
            if not estimator.in_process or estimator.needs.samples:
                raise ConfigError(
                    f"DemurCallbackHandler scores answers without further model calls, and "
                    f"estimator '{estimator.name}' needs samples or a model call. Use logprob "
                    "estimators here, or gate the model with DemurRunnable to use it."
                )
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold={threshold} is outside [0, 1]")
        self.estimators = chosen
        self.combiner = combine if isinstance(combine, ScoreCombiner) else ScoreCombiner(combine)
        self.threshold = threshold
        self.on_score = on_score
        self.records: deque[ScoredCall] = deque(maxlen=keep)
        self.tracing = RouteTracing(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
        )
        self._top_k = max((e.needs.top_logprobs for e in chosen), default=0)
        self._runs: dict[UUID, tuple[str, str]] = {}
        self._lock = threading.Lock()

    # --- LangChain's callbacks ---------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        question = last_human_text(messages[0]) if messages else None
        self._start(run_id, serialized, metadata, kwargs, question or "")

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, serialized, metadata, kwargs, prompts[0] if prompts else "")

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            model, question = self._runs.pop(run_id, ("model", ""))
        try:
            self._score(response, run_id, parent_run_id, model, question)
        except Exception:  # an observer must never break the chain it watches
            logger.exception("demur could not score the answer of run %s", run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    # --- scoring -----------------------------------------------------------------------------

    def _start(
        self,
        run_id: UUID,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        question: str,
    ) -> None:
        model = (metadata or {}).get("ls_model_name") or extra.get("name")
        if not model and serialized:
            ids = serialized.get("id") or ()
            model = serialized.get("name") or (ids[-1] if ids else None)
        with self._lock:
            self._runs[run_id] = (str(model or "model"), question)

    def _score(
        self,
        response: LLMResult,
        run_id: UUID,
        parent_run_id: UUID | None,
        model: str,
        question: str,
    ) -> None:
        if not response.generations or not response.generations[0]:
            return
        generation = response.generations[0][0]
        raw = (generation.generation_info or {}).get("logprobs")
        if isinstance(generation, ChatGeneration):
            raw = generation.message.response_metadata.get("logprobs", raw)
        tokens = parse_logprobs(raw, self._top_k)
        candidate = Candidate(text=generation.text.strip(), model=model, tokens=tokens)
        attempt = Attempt(query=Query(question or "(unknown question)"), candidate=candidate)
        with self.tracing.tracer.start_as_current_span(
            f"demur.score {model}", attributes={"demur.model": model}
        ) as span:
            scores = tuple(self._run(estimator, attempt, span) for estimator in self.estimators)
            confidence = self.combiner.combine(scores)
            if confidence is not None:
                span.set_attribute("demur.confidence", confidence)
                self.tracing.confidence.record(confidence, {"demur.model": model})
            context = span.get_span_context()
            trace_id = format(context.trace_id, "032x") if context.is_valid else None
        below = None
        if self.threshold is not None:
            below = confidence is None or confidence < self.threshold
        record = ScoredCall(
            run_id=run_id,
            parent_run_id=parent_run_id,
            model=model,
            question=question,
            answer=candidate.text,
            scores=scores,
            confidence=confidence,
            below_threshold=below,
            trace_id=trace_id,
        )
        self.records.append(record)
        if self.on_score is not None:
            self.on_score(record)

    def _run(self, estimator: Estimator, attempt: Attempt, span: trace.Span) -> Score:
        score = score_in_process(estimator, attempt, span.record_exception)
        self.tracing.record_score(span, score)
        return score

    @property
    def last(self) -> ScoredCall | None:
        """The latest record, if any."""
        return self.records[-1] if self.records else None


__all__ = ["DemurCallbackHandler", "ScoredCall"]

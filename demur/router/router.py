"""The router: ask a model, score the answer, let the policy decide, repeat until done.

`Router` is the driver. It validates its parts once, then loops: run an attempt
(`_attempt.AttemptRunner`), let the policy decide on it, hold the decision to the router's
limits (`_engine.enforce`), and carry it out. The pure rules live in `_engine`, model calls in
`_calls`, one retrieval in `_retrieve`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from opentelemetry import metrics, trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.trace import Span

from demur._construct import replace
from demur.errors import ConfigError, QueueError, UsageError, did_you_mean
from demur.grounding.rag import Rag
from demur.prompts import ChatPrompt, Prompt
from demur.protocols import (
    Calibrator,
    Estimator,
    Grounding,
    Model,
    Needs,
    Policy,
    Retriever,
    RouterSpec,
    RouteState,
    check_component,
)
from demur.router import _engine
from demur.router._attempt import AttemptRunner
from demur.router._calls import ModelCalls
from demur.router._handoff import hand_off
from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.sampling import Sampling
from demur.router.thread_loop import run_on_thread_loop
from demur.router.tracing import Redactor, RouteTracing
from demur.scoring import CombineMethod, ScoreCombiner
from demur.types import (
    Abstain,
    Accept,
    AskHuman,
    Escalate,
    GenerationRequest,
    Query,
    RetrieveMore,
    StartChoice,
    Step,
    Verdict,
)

DEFAULT_ABSTAIN_MESSAGE = "I am not confident enough to answer this question."

if TYPE_CHECKING:
    from demur.pregen.start import Prediction
    from demur.queue.base import ReviewQueue

logger = logging.getLogger("demur.router")


class SupportsShutdown(Protocol):
    """Something a router can own and release when it closes."""

    def shutdown(self) -> None: ...


class StartStage(Protocol):
    """A pre-generation stage: predicts where each route starts (`demur.pregen`)."""

    ladder: tuple[str, ...]

    def validate(self, models: Sequence[str]) -> None: ...

    async def astart_for(self, query: Query) -> Prediction: ...


class RouteRecorder(Protocol):
    """Keeps each route for later training and checks (`demur.RouteLog`)."""

    def record(self, query: Query, verdict: Verdict) -> str: ...


class VerdictObserver(Protocol):
    """Watches verdicts as they are given (`demur.drift.DriftMonitor`)."""

    def observe_verdict(self, verdict: Verdict) -> None: ...


class Router:
    """Routes queries through models, estimators and a policy.

        router = Router(
            models=[weak, strong],
            estimators=[MeanTokenLogprob()],
            policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain()]),
        )
        verdict = router.route("Who wrote Emma?")       # or: await router.aroute(...)

    The first model answers first unless `start` names another. Estimators run concurrently,
    each under `estimator_timeout_s`; one that fails or times out is recorded on the step and
    skipped. Transient model errors are retried under `retry`; `budget` bounds each route.

    With `retrievers` (one per embedding model, e.g. `ChromaStore().retriever("minilm-l6")`),
    each attempt retrieves passages and answers from them; `grounding` says how (`Rag()` by
    default, `ConfidentRag()`, `Situated()`), and a policy may ask to `RetrieveMore`.

    Spans go to `tracer_provider`, metrics to `meter_provider` and `gen_ai.evaluation.result`
    events to `logger_provider`: OpenTelemetry's global providers unless given.

    `pregen` (a `demur.pregen.PreGenerationRouter`) predicts from the question where each
    route starts: it may skip cheaper models up its ladder, never below `start`, and the
    policy still checks the answer; the verdict's `start` says what it predicted. Each verdict
    goes to `route_log` (a `RouteLog`) and `drift` (a `DriftMonitor`) when given; a failure
    there is logged, never raised into the route.

    `router.replace(start="strong", queue=None)` derives a router with some options changed.
    """

    def __init__(
        self,
        models: Sequence[Model] | Mapping[str, Model],
        *,
        policy: Policy,
        estimators: Sequence[Estimator] = (),
        start: str | None = None,
        combine: CombineMethod | ScoreCombiner = "mean",
        calibrator: Calibrator | None = None,
        queue: ReviewQueue | None = None,
        retrievers: Sequence[Retriever] | Mapping[str, Retriever] = (),
        grounding: Grounding | None = None,
        budget: Budget | None = None,
        retry: RetryPolicy | None = None,
        sampling: Sampling | None = None,
        estimator_timeout_s: float = 5.0,
        prompts: Mapping[str, Prompt] | None = None,
        abstain_message: str = DEFAULT_ABSTAIN_MESSAGE,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        capture_content: bool = False,
        redact: Redactor | None = None,
        pregen: StartStage | None = None,
        route_log: RouteRecorder | None = None,
        drift: VerdictObserver | None = None,
    ) -> None:
        self._options: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "__class__")
        }
        self._owned: list[SupportsShutdown] = []
        self.models = _index("model", models, Model, "ModelBase")
        if not self.models:
            raise ConfigError("a router needs at least one model")
        self.start = start if start is not None else next(iter(self.models))
        if self.start not in self.models:
            raise ConfigError(
                f"start model '{self.start}' is not among the router's models."
                f"{did_you_mean(self.start, self.models)} Models: {', '.join(self.models)}."
            )
        check_component("policy", policy, Policy, "PolicyBase")
        self.policy = policy
        self.estimators = tuple(estimators)
        for estimator in self.estimators:
            check_component("estimator", estimator, Estimator, "EstimatorBase")
        names = [e.name for e in self.estimators]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"estimator names must be unique; repeated: {', '.join(duplicates)}")
        if not estimator_timeout_s > 0:
            raise ConfigError(f"estimator_timeout_s must be > 0 seconds, got {estimator_timeout_s}")
        self.combiner = combine if isinstance(combine, ScoreCombiner) else ScoreCombiner(combine)
        self.calibrator = calibrator
        self.queue = queue
        self.budget = budget or Budget()
        self.retry = retry or RetryPolicy()
        self.sampling = sampling or Sampling()
        self.estimator_timeout_s = estimator_timeout_s
        self.abstain_message = abstain_message
        self.retrievers = _index("retriever", retrievers, Retriever, "RetrieverBase")
        self.grounding: Grounding = grounding if grounding is not None else Rag()
        check_component("grounding", self.grounding, Grounding, "GroundingBase")
        self.spec = RouterSpec(
            models=tuple(self.models),
            retrievers=tuple(self.retrievers),
            has_queue=queue is not None,
        )
        self.policy.validate(self.spec)
        if pregen is not None:
            pregen.validate(list(self.models))
        self.pregen = pregen
        self.route_log = route_log
        self.drift = drift
        self.grounding.validate(self.spec)
        unknown = set(prompts or {}) - set(self.models)
        if unknown:
            raise ConfigError(f"prompts given for unknown models: {', '.join(sorted(unknown))}")
        needs = self.grounding.needs
        for estimator in self.estimators:
            needs = needs.merge(estimator.needs)
        self._needs = needs
        self._requests = {
            name: (
                (prompts or {}).get(name) or model.default_prompt or ChatPrompt(),
                {
                    "max_tokens": model.max_tokens,
                    "logprobs": needs.logprobs,
                    "top_logprobs": needs.top_logprobs,
                },
            )
            for name, model in self.models.items()
        }
        self.tracing = RouteTracing(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            capture_content=capture_content,
            redact=redact,
        )
        self._attempts = AttemptRunner(
            models=self.models,
            policy=self.policy,
            grounding=self.grounding,
            retrievers=self.retrievers,
            estimators=self.estimators,
            needs=needs,
            combiner=self.combiner,
            calibrator=self.calibrator,
            sampling=self.sampling,
            estimator_timeout_s=estimator_timeout_s,
            request_for=self.request_for,
            calls=ModelCalls(self.retry, self.budget.deadline_s, self.tracing),
            tracing=self.tracing,
        )

    def replace(self, **changes: Any) -> Router:
        """A new router with the same options except `changes` (any `Router(...)` keyword)."""
        unknown = set(changes) - set(self._options)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(
                f"Router.replace() got an unknown option '{name}'."
                f"{did_you_mean(name, self._options)} Options: {', '.join(self._options)}."
            )
        return Router(**{**self._options, **changes})

    @property
    def needs(self) -> Needs:
        """What the configured estimators and grounding need from each attempt, merged."""
        return self._needs

    def request_for(self, model: str, query: Query) -> GenerationRequest:
        """The request the router sends `model` for `query`, with the query's own settings."""
        prompt, settings = self._requests[model]
        request = replace(prompt.render(query), **settings)
        return request if query.generation is None else query.generation.apply(request)

    # --- the route loop ----------------------------------------------------------------------

    def route(self, query: Query | str) -> Verdict:
        """Route one query and wait for the verdict (synchronous facade of `aroute`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UsageError(
                "Router.route() was called inside a running event loop; use "
                "`await router.aroute(query)` there instead"
            )
        # The runner's loop outlives this call: pass the caller's context explicitly so demur's
        # spans nest under the caller's active span.
        return run_on_thread_loop(self.aroute(query), contextvars.copy_context())

    async def aroute(self, query: Query | str) -> Verdict:
        """Route one query: attempt, estimate, decide, until the policy accepts or gives up."""
        query = Query.coerce(query)
        started = time.perf_counter()
        deadline = time.monotonic() + self.budget.deadline_s
        policy = self.policy.name
        with self.tracing.route(policy) as root:
            steps: list[Step] = []
            model = self.start
            start: StartChoice | None = None
            if self.pregen is not None:
                start = await self._predict_start(query, root)
                model = start.model
            spent = 0.0
            more: RetrieveMore | None = None
            while True:
                step = await self._attempts.run(len(steps), model, query, deadline, more)
                spent += step.cost
                steps.append(step)
                state = RouteState(
                    query=query,
                    steps=tuple(steps),
                    models=self.spec.models,
                    steps_left=self.budget.max_steps - len(steps),
                    cost_left=self.budget.max_cost - spent,
                    time_left_s=deadline - time.monotonic(),
                    has_queue=self.spec.has_queue,
                )
                decision = _engine.enforce(self.policy.decide(state), state, self.spec, policy)
                steps[-1] = step = replace(step, decision=decision)
                self.tracing.decision(root, policy, step, decision)
                action = decision.action
                if isinstance(action, Escalate):
                    model = action.model  # the stronger model keeps any wider retrieval
                    continue
                if isinstance(action, RetrieveMore):
                    model, more = action.model or step.model, action
                    continue
                verdict = await self._conclude(action, query, steps, root, started, deadline)
                if start is not None:
                    verdict = replace(verdict, start=start)
                self.tracing.finish_route(root, verdict, policy)
                self._observe(query, verdict)
                return verdict

    async def _predict_start(self, query: Query, root: Span) -> StartChoice:
        """Where the pre-generation stage starts this route: never below `self.start`."""
        assert self.pregen is not None
        prediction = await self.pregen.astart_for(query)
        ladder = prediction.ladder
        lowest = ladder.index(self.start) if self.start in ladder else 0
        model, reason = self.start, f"starts at {self.start}: {prediction.reason}"
        skipped: tuple[str, ...] = ()
        target = prediction.start
        moves_up = target in ladder and ladder.index(target) > lowest
        if target != self.start and target in self.models and moves_up:
            model, skipped = target, ladder[lowest : ladder.index(target)]
            reason = prediction.reason
        if root.is_recording():
            root.set_attributes(prediction.attributes())
        return StartChoice(
            model=model,
            skipped=tuple(skipped),
            probabilities=dict(prediction.probabilities),
            reason=reason,
            predictor=prediction.predictor,
            error=prediction.error,
        )

    def _observe(self, query: Query, verdict: Verdict) -> None:
        """Give the verdict to the route log and the drift monitor; their failures are logged."""
        if self.route_log is not None:
            try:
                self.route_log.record(query, verdict)
            except Exception:
                logger.warning("the route log could not record a route", exc_info=True)
        if self.drift is not None:
            try:
                self.drift.observe_verdict(verdict)
            except Exception:
                logger.warning("the drift monitor could not observe a verdict", exc_info=True)

    async def _conclude(
        self,
        action: Accept | AskHuman | Abstain,
        query: Query,
        steps: list[Step],
        root: Span,
        started: float,
        deadline: float,
    ) -> Verdict:
        trace_id = _trace_id(root)

        def common() -> dict[str, Any]:
            return {
                "trace_id": trace_id,
                "cost": sum(s.cost for s in steps),
                "latency_s": time.perf_counter() - started,
            }

        if isinstance(action, AskHuman):
            try:
                ticket_id = await self._enqueue(action, query, steps, root, deadline)
            except Exception as exc:
                _engine.with_queue_failure(steps, exc)
                self.tracing.record_error(root, exc)
                # A QueueError's message is the queue's own (its location, a limit), not
                # content; the operator needs it to repair the queue.
                shown = f"{type(exc).__name__}: {exc}" if isinstance(exc, QueueError) else None
                logger.error(
                    "the review queue took no ticket (%s), so the route abstains: %s",
                    _engine.queue_failure_code(exc),
                    shown or self.tracing.describe(exc),
                )
                action = Abstain()
            else:
                return _engine.pending_verdict(ticket_id, steps, **common())
        if isinstance(action, Accept):
            return _engine.answered_verdict(action, steps, **common())
        return _engine.abstained_verdict(action.message or self.abstain_message, steps, **common())

    async def _enqueue(
        self, action: AskHuman, query: Query, steps: list[Step], root: Span, deadline: float
    ) -> str:
        assert self.queue is not None
        span = root.get_span_context()
        span_id = format(span.span_id, "016x") if span.is_valid else None
        request = _engine.ticket_request(action, query, steps, _trace_id(root), span_id)
        ticket = await hand_off(self.queue, request, deadline - time.monotonic())
        return ticket.id

    # --- lifecycle ---------------------------------------------------------------------------

    def own(self, resource: SupportsShutdown) -> None:
        """Shut `resource` down when this router closes (e.g. the telemetry it was built with)."""
        self._owned.append(resource)

    async def aclose(self) -> None:
        """Release the models' resources (loaded weights, HTTP connections), and what it owns."""
        for model in self.models.values():
            await model.aclose()
        self._attempts.calls.close()
        while self._owned:
            await asyncio.to_thread(self._owned.pop().shutdown)

    def close(self) -> None:
        run_on_thread_loop(self.aclose())

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"Router(models={list(self.models)}, policy={self.policy!r}, "
            f"estimators={[e.name for e in self.estimators]})"
        )


_Part = TypeVar("_Part", Model, Retriever)


def _index(
    role: str, parts: Sequence[_Part] | Mapping[str, _Part], protocol: type, base: str
) -> dict[str, _Part]:
    """Parts by name; each checked against its protocol, names unique."""
    if isinstance(parts, Mapping):
        indexed = dict(parts)
    else:
        indexed = {}
        for part in parts:
            if part.name in indexed:
                raise ConfigError(f"two {role}s are named '{part.name}'; names must be unique")
            indexed[part.name] = part
    for part in indexed.values():
        check_component(role, part, protocol, base)
    return indexed


def _trace_id(span: Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


__all__ = ["DEFAULT_ABSTAIN_MESSAGE", "Router"]

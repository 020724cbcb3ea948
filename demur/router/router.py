"""The router: ask a model, score the answer, let the policy decide, repeat until done."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span

from demur.adapters.models.base import FREE, Model, Price
from demur.calibration.base import Calibrator
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    DeadlineExceededError,
    DemurError,
    EstimatorError,
    EstimatorUnavailable,
    ModelError,
    ModelTimeoutError,
    RouteError,
    TransientModelError,
    did_you_mean,
)
from demur.estimators.base import NOTHING, Attempt, Estimator, Needs
from demur.grounding.base import BranchPlan, Grounding
from demur.grounding.rag import Rag
from demur.policies.base import Policy, RouteState
from demur.prompts import ChatPrompt, CompletionPrompt, Prompt
from demur.queue.base import CandidateAnswer, ReviewQueue, TicketRequest
from demur.retrieval.base import Retriever
from demur.router.budget import Budget
from demur.router.combine import CombineMethod, ScoreCombiner
from demur.router.retrieval import RetrievalRun, retrieve
from demur.router.retry import RetryPolicy
from demur.router.sampling import Sampling, settled
from demur.router.thread_loop import run_on_thread_loop
from demur.router.tracing import Redactor, RouteTracing
from demur.types import (
    Abstain,
    Accept,
    AskHuman,
    Branch,
    Candidate,
    Completion,
    Decision,
    Document,
    Escalate,
    Generation,
    GenerationRequest,
    Query,
    Retrieval,
    RetrieveMore,
    Score,
    Step,
    Verdict,
)

DEFAULT_ABSTAIN_MESSAGE = "I am not confident enough to answer this question."


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
        capture_content: bool = False,
        redact: Redactor | None = None,
    ) -> None:
        self.models = self._index_models(models)
        self.start = start if start is not None else next(iter(self.models))
        if self.start not in self.models:
            raise ConfigError(
                f"start model '{self.start}' is not among the router's models."
                f"{did_you_mean(self.start, self.models)} Models: {', '.join(self.models)}."
            )
        self.policy = policy
        self.estimators = tuple(estimators)
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
        self.policy.validate(tuple(self.models), has_queue=queue is not None)
        self.retrievers = self._index_retrievers(retrievers)
        self.grounding: Grounding = grounding if grounding is not None else Rag()
        self.grounding.validate(tuple(self.retrievers))
        validate_retrievers = getattr(self.policy, "validate_retrievers", None)
        if callable(validate_retrievers):
            validate_retrievers(tuple(self.retrievers))
        unknown = set(prompts or {}) - set(self.models)
        if unknown:
            raise ConfigError(f"prompts given for unknown models: {', '.join(sorted(unknown))}")
        self._needs = NOTHING
        for estimator in self.estimators:
            self._needs = self._needs.merge(estimator.needs)
        grounding_needs = getattr(self.grounding, "needs", None)
        if isinstance(grounding_needs, Needs):
            self._needs = self._needs.merge(grounding_needs)
        self._requests = self._base_requests(prompts or {})
        self.tracing = RouteTracing(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture_content,
            redact=redact,
        )

    @staticmethod
    def _index_models(models: Sequence[Model] | Mapping[str, Model]) -> dict[str, Model]:
        if isinstance(models, Mapping):
            indexed = dict(models)
        else:
            indexed = {}
            for model in models:
                if model.name in indexed:
                    raise ConfigError(f"two models are named '{model.name}'; names must be unique")
                indexed[model.name] = model
        if not indexed:
            raise ConfigError("a router needs at least one model")
        for name, model in indexed.items():
            if not callable(getattr(model, "agenerate", None)):
                raise ConfigError(
                    f"model '{name}' ({type(model).__name__}) has no agenerate() method; "
                    "see demur.Model for the protocol"
                )
        return indexed

    @staticmethod
    def _index_retrievers(
        retrievers: Sequence[Retriever] | Mapping[str, Retriever],
    ) -> dict[str, Retriever]:
        if isinstance(retrievers, Mapping):
            indexed = dict(retrievers)
        else:
            indexed = {}
            for retriever in retrievers:
                if retriever.name in indexed:
                    raise ConfigError(
                        f"two retrievers are named '{retriever.name}'; names must be unique"
                    )
                indexed[retriever.name] = retriever
        for name, retriever in indexed.items():
            if not callable(getattr(retriever, "aretrieve", None)):
                raise ConfigError(
                    f"retriever '{name}' ({type(retriever).__name__}) has no aretrieve() method; "
                    "see demur.Retriever for the protocol"
                )
        return indexed

    def _base_requests(
        self, prompts: Mapping[str, Prompt]
    ) -> dict[str, tuple[Prompt, dict[str, Any]]]:
        needs = self._needs
        requests = {}
        for name, model in self.models.items():
            prompt = prompts.get(name) or getattr(model, "default_prompt", None) or ChatPrompt()
            settings: dict[str, Any] = {
                "max_tokens": getattr(model, "max_tokens", 64),
                "logprobs": needs.logprobs,
                "top_logprobs": needs.top_logprobs,
            }
            requests[name] = (prompt, settings)
        return requests

    @property
    def needs(self) -> Needs:
        """What the configured estimators need from each attempt, merged."""
        return self._needs

    def request_for(self, model: str, query: Query) -> GenerationRequest:
        """The request the router sends `model` for `query`."""
        prompt, settings = self._requests[model]
        request = prompt.render(query)
        return request.model_copy(update=settings)

    # --- the route loop ----------------------------------------------------------------------

    def route(self, query: Query | str) -> Verdict:
        """Route one query and wait for the verdict (synchronous facade of `aroute`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise DemurError(
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
        with self.tracing.route(self.policy.name) as root:
            steps: list[Step] = []
            model = self.start
            spent = 0.0
            more: RetrieveMore | None = None
            while True:
                step = await self._attempt(len(steps), model, query, deadline, more)
                spent += step.cost
                steps.append(step)
                state = RouteState(
                    query=query,
                    steps=tuple(steps),
                    models=tuple(self.models),
                    steps_left=self.budget.max_steps - len(steps),
                    cost_left=self.budget.max_cost - spent,
                    time_left_s=deadline - time.monotonic(),
                    has_queue=self.queue is not None,
                )
                decision = self._enforce(self.policy.decide(state), state)
                steps[-1] = step = step.model_copy(update={"decision": decision})
                self.tracing.decision(self.policy.name, step, decision)
                action = decision.action
                if isinstance(action, Escalate):
                    model = action.model  # the stronger model keeps any wider retrieval
                    continue
                if isinstance(action, RetrieveMore):
                    model, more = action.model or step.model, action
                    continue
                verdict = await self._conclude(action, query, steps, root, started)
                self.tracing.finish_route(root, verdict, self.policy.name)
                return verdict

    def _enforce(self, decision: Decision, state: RouteState) -> Decision:
        """Hold a policy to the router's limits, whatever the policy decided."""
        action = decision.action
        if isinstance(action, Escalate):
            if action.model not in self.models:
                raise RouteError(
                    f"policy {self.policy.name!r} escalated to unknown model '{action.model}'"
                )
            blocker = state.budget_blocker()
            if blocker is not None:
                return Decision(
                    action=Abstain(),
                    reason=f"{decision.reason}; escalation refused: {blocker}",
                    threshold=decision.threshold,
                )
        if isinstance(action, RetrieveMore):
            self._check_retrieve_more(action)
            blocker = state.budget_blocker()
            if blocker is not None:
                return Decision(
                    action=Abstain(),
                    reason=f"{decision.reason}; retrieving more refused: {blocker}",
                    threshold=decision.threshold,
                )
        if isinstance(action, Accept):
            index = state.current.index if action.step is None else action.step
            if not 0 <= index < len(state.steps) or state.steps[index].candidate is None:
                raise RouteError(
                    f"policy {self.policy.name!r} accepted step {index}, which has no answer"
                )
        if isinstance(action, AskHuman) and self.queue is None:
            raise RouteError(f"policy {self.policy.name!r} asked a human but there is no queue")
        return decision

    def _check_retrieve_more(self, action: RetrieveMore) -> None:
        name = self.policy.name
        if not self.retrievers:
            raise RouteError(
                f"policy {name!r} asked to retrieve more but the router has no retriever"
            )
        if action.retriever is not None and action.retriever not in self.retrievers:
            raise RouteError(
                f"policy {name!r} asked to retrieve with unknown retriever '{action.retriever}'"
            )
        if action.model is not None and action.model not in self.models:
            raise RouteError(f"policy {name!r} asked unknown model '{action.model}' to answer")

    async def _conclude(
        self,
        action: Accept | AskHuman | Abstain,
        query: Query,
        steps: list[Step],
        root: Span,
        started: float,
    ) -> Verdict:
        trace_id = _trace_id(root)
        common: dict[str, Any] = {"trace_id": trace_id, "cost": sum(s.cost for s in steps)}
        if isinstance(action, AskHuman):
            try:
                ticket_id = await self._enqueue(action, query, steps, root)
            except Exception as exc:
                decision = steps[-1].decision
                assert decision is not None
                steps[-1] = steps[-1].model_copy(
                    update={
                        "decision": Decision(
                            action=Abstain(),
                            reason=f"{decision.reason}; review queue failed: {exc}",
                            threshold=decision.threshold,
                        )
                    }
                )
                root.record_exception(exc)
                action = Abstain()
            else:
                return Verdict.model_construct(
                    status="pending",
                    ticket_id=ticket_id,
                    message="A person will review this question.",
                    confidence=steps[-1].confidence,
                    calibrated=steps[-1].calibrated,
                    steps=tuple(steps),
                    latency_s=time.perf_counter() - started,
                    **common,
                )
        if isinstance(action, Accept):
            chosen = steps[steps[-1].index if action.step is None else action.step]
            assert chosen.candidate is not None
            return Verdict.model_construct(
                status="answered",
                answer=chosen.candidate.text,
                confidence=chosen.confidence,
                calibrated=chosen.calibrated,
                model=chosen.model,
                steps=tuple(steps),
                latency_s=time.perf_counter() - started,
                **common,
            )
        overflow = self._only_overflows(steps)
        if overflow is not None:
            raise ContextOverflowError(
                f"the question does not fit any model that was tried: {overflow}"
            )
        return Verdict.model_construct(
            status="abstained",
            message=action.message or self.abstain_message,
            confidence=steps[-1].confidence,
            calibrated=steps[-1].calibrated,
            steps=tuple(steps),
            latency_s=time.perf_counter() - started,
            **common,
        )

    @staticmethod
    def _only_overflows(steps: list[Step]) -> str | None:
        """The error text when every step failed because the prompt was too long."""
        if steps and all(s.error_type == "ContextOverflowError" for s in steps):
            return "; ".join(s.error or "" for s in steps)
        return None

    async def _enqueue(self, action: AskHuman, query: Query, steps: list[Step], root: Span) -> str:
        assert self.queue is not None
        decision = steps[-1].decision
        span = root.get_span_context()
        key = query.metadata.get("idempotency_key")
        request = TicketRequest(
            question=query.question,
            context=query.context,
            candidates=tuple(
                CandidateAnswer(
                    model=s.model,
                    text=s.candidate.text,
                    confidence=s.confidence,
                    scores={sc.estimator: sc.confidence for sc in s.scores},
                    details=s.scores,
                )
                for s in steps
                if s.candidate is not None
            ),
            reason=decision.reason if decision is not None else "",
            trace_id=_trace_id(root),
            span_id=format(span.span_id, "016x") if span.is_valid else None,
            priority=action.priority,
            # A caller that retries a route can pass the same key: one ticket, not two.
            idempotency_key=str(key) if key is not None else None,
        )
        ticket = await asyncio.to_thread(self.queue.enqueue, request)
        return ticket.id

    # --- one attempt -------------------------------------------------------------------------

    async def _attempt(
        self,
        index: int,
        model_name: str,
        query: Query,
        deadline: float,
        more: RetrieveMore | None = None,
    ) -> Step:
        model = self.models[model_name]
        with self.tracing.attempt(index, model_name) as span:
            started = time.perf_counter()
            ledger = _Ledger()
            plans = self.grounding.plan(query, tuple(self.retrievers), more)
            if len(plans) == 1:
                run = await self._branch(plans[0], model, query, deadline, ledger, span, {})
                step = self._single_step(index, model_name, run, ledger, started)
            else:
                step = await self._compare(
                    index, model, query, plans, deadline, ledger, span, started
                )
            self.tracing.finish_attempt(span, step)
            return step

    def _single_step(
        self, index: int, model: str, run: _BranchRun, ledger: _Ledger, started: float
    ) -> Step:
        branch = run.branch
        return Step.model_construct(
            index=index,
            model=model,
            candidate=branch.candidate,
            retrieval=branch.retrieval,
            scores=branch.scores,
            raw_confidence=run.raw,
            confidence=branch.confidence,
            calibrated=run.calibrated,
            error=branch.error,
            error_type=branch.error_type,
            notes=branch.notes,
            retries=run.retries,
            # A failed answer's own calls never reached the ledger.
            calls=ledger.calls + (0 if branch.candidate is not None else run.retries + 1),
            cost=ledger.cost,
            latency_s=time.perf_counter() - started,
        )

    async def _compare(
        self,
        index: int,
        model: Model,
        query: Query,
        plans: Sequence[BranchPlan],
        deadline: float,
        ledger: _Ledger,
        span: Span,
        started: float,
    ) -> Step:
        """Run the grounding's branches concurrently, then let it select the answer to keep."""
        done: dict[str, _BranchRun] = {}

        async def run(plan: BranchPlan) -> None:
            with self.tracing.branch(plan.name) as branch_span:
                done[plan.name] = await self._branch(
                    plan, model, query, deadline, ledger, branch_span, done
                )

        await asyncio.gather(*(run(plan) for plan in plans))
        followup = getattr(self.grounding, "followup", None)
        if callable(followup):
            extra = followup(query, [r.branch for r in done.values()])
            if extra is not None:
                await run(extra)
        planned = [p.name for p in plans]
        runs = [done[name] for name in planned] + [r for n, r in done.items() if n not in planned]
        branches = tuple(r.branch for r in runs)
        calls = ledger.calls + sum(r.retries + 1 for r in runs if r.branch.candidate is None)
        selection = self.grounding.select(query, branches)
        chosen = done.get(selection.branch) if selection.branch is not None else None
        span.set_attribute("demur.branch", selection.branch or "")
        if chosen is None or chosen.branch.candidate is None:
            failed = next((r.branch for r in runs if r.branch.error is not None), None)
            return Step.model_construct(
                index=index,
                model=model.name,
                branches=branches,
                selection=selection.reason,
                error=failed.error if failed else selection.reason,
                error_type=failed.error_type if failed else "NoAnswer",
                retries=sum(r.retries for r in runs),
                calls=calls,
                cost=ledger.cost,
                latency_s=time.perf_counter() - started,
            )
        return Step.model_construct(
            index=index,
            model=model.name,
            candidate=chosen.branch.candidate,
            retrieval=chosen.branch.retrieval,
            branches=branches,
            branch=selection.branch,
            selection=selection.reason,
            scores=chosen.branch.scores,
            raw_confidence=chosen.raw,
            confidence=selection.confidence,
            calibrated=chosen.calibrated,
            notes=chosen.branch.notes,
            retries=sum(r.retries for r in runs),
            calls=calls,
            cost=ledger.cost,
            latency_s=time.perf_counter() - started,
        )

    async def _branch(
        self,
        plan: BranchPlan,
        model: Model,
        query: Query,
        deadline: float,
        ledger: _Ledger,
        span: Span,
        done: Mapping[str, _BranchRun],
    ) -> _BranchRun:
        """Retrieve (if planned), answer, draw samples, and score: one branch of an attempt."""
        started = time.perf_counter()
        retrieval: Retrieval | None = None
        if plan.documents_from is not None and plan.documents_from in done:
            source = done[plan.documents_from].branch
            documents = source.candidate.documents if source.candidate is not None else ()
            retrieval = source.retrieval
        elif plan.retriever is not None:
            retrieval = await self._retrieve(plan, model, query, deadline, ledger)
            documents = retrieval.documents
        elif plan.use_context:
            documents = tuple(
                Document.model_construct(id=f"context-{i}", text=text)
                for i, text in enumerate(query.context)
            )
        else:
            documents = ()
        try:
            answered = await self._answer(model, plan, query, documents, retrieval, deadline)
        except ModelError as exc:
            branch = Branch.model_construct(
                name=plan.name,
                retrieval=retrieval,
                error=str(exc),
                error_type=type(exc).__name__,
                latency_s=time.perf_counter() - started,
            )
            return _BranchRun(branch, None, False, exc.retries)
        generation, grounded, retrieval = answered.generation, answered.query, answered.retrieval
        ledger.add(model, generation)
        samples: tuple[Completion, ...] = ()
        if self._needs.samples:
            answer = generation.completions[0].text
            samples = await self._draw_samples(
                model, answered.request, answer, deadline, ledger, span
            )
        candidate = self._candidate(model, generation, samples, answered.documents)

        async def ask(request: GenerationRequest, target: Model | str | None = None) -> Generation:
            return await self._ask(model, target, request, deadline, ledger)

        attempt = Attempt(query=grounded, candidate=candidate, caller=ask)
        scores = await self._estimate(attempt, span)
        raw = self.combiner.combine(scores)
        confidence = raw
        calibrated = False
        if raw is not None and self.calibrator is not None:
            confidence = min(1.0, max(0.0, float(self.calibrator.calibrate(raw))))
            calibrated = True
        branch = Branch.model_construct(
            name=plan.name,
            candidate=candidate,
            scores=scores,
            confidence=confidence,
            retrieval=retrieval,
            notes=answered.notes,
            latency_s=time.perf_counter() - started,
        )
        return _BranchRun(branch, raw, calibrated, answered.retries)

    @staticmethod
    def _grounded(query: Query, plan: BranchPlan, documents: Sequence[Document]) -> Query:
        """The query as the model sees it in this branch: its passages, its question text."""
        context = tuple(d.text for d in documents)
        if plan.question is None and context == query.context:
            return query
        update: dict[str, Any] = {"context": context}
        if plan.question is not None:
            update["question"] = plan.question
        return query.model_copy(update=update)

    async def _answer(
        self,
        model: Model,
        plan: BranchPlan,
        query: Query,
        documents: tuple[Document, ...],
        retrieval: Retrieval | None,
        deadline: float,
    ) -> _Answered:
        """Generate the branch's answer, making the passages fit the context window.

        While more than one passage is left, the least similar is dropped first (the retrieval
        record counts them); the last one is trimmed from its end until the prompt fits, and
        the step's notes say by how much. Without passages the overflow stands.
        """
        dropped, notes = 0, []
        original = ""  # the last passage before any trimming
        while True:
            grounded = self._grounded(query, plan, documents)
            request = self.request_for(model.name, grounded)
            try:
                generation, retries = await self._generate(model, request, deadline)
            except ContextOverflowError as exc:
                if len(documents) > 1:
                    documents, dropped = documents[:-1], dropped + 1
                    continue
                kept = ""
                if documents:
                    kept = _trimmed(documents[0].text, exc, _request_chars(request))
                if not kept:
                    raise
                original = original or documents[0].text
                documents = (documents[0].model_copy(update={"text": kept}),)
                notes = [
                    f"passage trimmed from {len(original):,} to {len(kept):,} characters to fit "
                    f"{model.name}'s context window"
                ]
                continue
            if dropped:
                note = f"{dropped} passage(s) dropped to fit {model.name}'s context window"
                notes.insert(0, note)
                if retrieval is not None:
                    retrieval = retrieval.model_copy(
                        update={"note": "; ".join(filter(None, [retrieval.note, note]))}
                    )
            return _Answered(
                generation, retries, documents, retrieval, grounded, request, tuple(notes)
            )

    async def _retrieve(
        self, plan: BranchPlan, model: Model, query: Query, deadline: float, ledger: _Ledger
    ) -> Retrieval:
        """Retrieve the branch's passages; a failure is recorded and the model answers without."""
        assert plan.retriever is not None
        text, rewritten = query.question, False
        if plan.rewrite:
            text, rewritten = await self._rewrite(model, query.question, deadline, ledger)
        run = RetrievalRun(
            retriever=plan.retriever, query=text, k=plan.k, cutoff=plan.cutoff, rewritten=rewritten
        )
        with self.tracing.retrieval(run.retriever, run.k, text) as span:
            retrieval = await retrieve(run, self.retrievers)
            self.tracing.record_retrieval(span, retrieval)
        return retrieval

    async def _rewrite(
        self, model: Model, question: str, deadline: float, ledger: _Ledger
    ) -> tuple[str, bool]:
        from demur.grounding.rewrite import parse_rewrite, rewrite_request

        prompt, _ = self._requests[model.name]
        request = rewrite_request(question, chat=not isinstance(prompt, CompletionPrompt))
        try:
            generation, _ = await self._generate(model, request, deadline)
        except ModelError:
            return question, False  # retrieving with the question itself still helps
        ledger.add(model, generation)
        return parse_rewrite(generation.completions[0].text, question)

    def _candidate(
        self,
        model: Model,
        generation: Generation,
        samples: tuple[Completion, ...],
        documents: tuple[Document, ...] = (),
    ) -> Candidate:
        price: Price = getattr(model, "price", FREE)
        main = generation.completions[0]
        return Candidate.model_construct(
            text=main.text.strip(),
            model=model.name,
            tokens=main.tokens,
            samples=samples,
            documents=documents,
            finish_reason=main.finish_reason,
            usage=generation.usage,
            cost=price.cost(generation.usage),
            response_id=generation.response_id,
        )

    async def _draw_samples(
        self,
        model: Model,
        request: GenerationRequest,
        answer: str,
        deadline: float,
        ledger: _Ledger,
        span: Span,
    ) -> tuple[Completion, ...]:
        """Draw the samples estimators asked for; adaptive sampling stops once settled.

        A failed sampling call ends the drawing: estimators see the samples drawn so far and
        say so if they are too few.
        """
        planned, sampling = self._needs.samples, self.sampling
        batch = sampling.batch_size if sampling.adaptive else planned
        threshold_for = getattr(self.policy, "threshold_for", None)
        threshold = threshold_for(model.name) if callable(threshold_for) else None
        base = request.model_copy(
            update={
                "temperature": sampling.temperature,
                "logprobs": self._needs.sample_logprobs,
                "top_logprobs": 0,
            }
        )
        drawn: list[Completion] = []
        while len(drawn) < planned:
            seed = (request.seed or 0) + 1 + len(drawn)  # every batch draws fresh samples
            batch_request = base.model_copy(
                update={"n": min(batch, planned - len(drawn)), "seed": seed}
            )
            try:
                generation, _ = await self._generate(model, batch_request, deadline)
            except ModelError as exc:
                span.record_exception(exc)
                break
            ledger.add(model, generation)
            drawn.extend(generation.completions)
            texts = [c.text for c in drawn]
            if sampling.adaptive and settled(
                answer, texts, planned, sampling.min_samples, threshold
            ):
                break
        span.set_attribute("demur.samples", len(drawn))
        return tuple(
            Completion(text=c.text.strip(), tokens=c.tokens, finish_reason=c.finish_reason)
            for c in drawn
        )

    async def _ask(
        self,
        default: Model,
        target: Model | str | None,
        request: GenerationRequest,
        deadline: float,
        ledger: _Ledger,
    ) -> Generation:
        """A model call on an estimator's behalf: retried, traced, and counted in the step."""
        if target is None:
            model = default
        elif isinstance(target, str):
            if target not in self.models:
                raise EstimatorError(
                    f"an estimator asked for model '{target}', which the router does not "
                    f"have.{did_you_mean(target, self.models)}"
                )
            model = self.models[target]
        else:
            model = target
        generation, _ = await self._generate(model, request, deadline)
        ledger.add(model, generation)
        return generation

    async def _generate(
        self, model: Model, request: GenerationRequest, deadline: float
    ) -> tuple[Generation, int]:
        """Call the model, retrying transient failures, never past the route deadline.

        The first call runs outside tenacity, which only steps in after a transient failure:
        the common case stays cheap, and the retry schedule is the same either way.
        """
        call_timeout = float(getattr(model, "timeout_s", 60.0))
        provider = str(getattr(model, "provider", type(model).__name__))
        try:
            return await self._call_traced(model, provider, request, call_timeout, deadline), 0
        except TransientModelError as exc:
            first_failure: TransientModelError | None = exc
        tries = 1
        try:
            async for attempt in self.retry.retrying(deadline - time.monotonic()):
                with attempt:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure  # lets tenacity count it and back off
                    tries += 1
                    generation = await self._call_traced(
                        model, provider, request, call_timeout, deadline
                    )
            return generation, tries - 1
        except ModelError as exc:
            exc.retries = tries - 1
            raise

    async def _call_traced(
        self,
        model: Model,
        provider: str,
        request: GenerationRequest,
        call_timeout: float,
        deadline: float,
    ) -> Generation:
        time_left = deadline - time.monotonic()
        if time_left <= 0:
            raise DeadlineExceededError(
                f"route deadline of {self.budget.deadline_s:g}s passed "
                f"before {model.name} could answer"
            )
        with self.tracing.model_call(model.name, provider, request) as span:
            generation = await self._call_once(model, request, call_timeout, time_left)
            self.tracing.record_generation(span, generation)
        return generation

    async def _call_once(
        self, model: Model, request: GenerationRequest, call_timeout: float, time_left: float
    ) -> Generation:
        limit = min(call_timeout, time_left)
        try:
            async with asyncio.timeout(limit):
                generation = await model.agenerate(request)
        except TimeoutError:
            if limit < call_timeout:
                raise DeadlineExceededError(
                    f"route deadline of {self.budget.deadline_s:g}s passed "
                    f"while waiting for {model.name}"
                ) from None
            raise ModelTimeoutError(
                f"{model.name} did not answer within its timeout of {call_timeout:g}s",
                model=model.name,
            ) from None
        except ModelError:
            raise
        except Exception as exc:
            raise RouteError(
                f"model '{model.name}' raised {type(exc).__name__}: {exc}. Backends must raise "
                "demur.ModelError subclasses so the router can retry or record the failure."
            ) from exc
        if not generation.completions:
            raise RouteError(f"model '{model.name}' returned no completion")
        return generation

    async def _estimate(self, attempt: Attempt, attempt_span: Span) -> tuple[Score, ...]:
        if not self.estimators:
            return ()
        if len(self.estimators) == 1:
            return (await self._run_estimator(self.estimators[0], attempt, attempt_span),)
        return tuple(
            await asyncio.gather(
                *(self._run_estimator(e, attempt, attempt_span) for e in self.estimators)
            )
        )

    async def _run_estimator(
        self, estimator: Estimator, attempt: Attempt, attempt_span: Span
    ) -> Score:
        estimate = getattr(estimator, "estimate", None)
        calls = 0
        if estimate is None and attempt.caller is not None:
            outer = attempt.caller

            async def counted(
                request: GenerationRequest, target: Model | str | None = None
            ) -> Generation:
                nonlocal calls
                generation = await outer(request, target)
                calls += 1  # counted like the step's ledger: calls that returned
                return generation

            attempt = dataclasses.replace(attempt, caller=counted)
        with self.tracing.estimator(estimator.name, current=estimate is None) as span:
            started = time.perf_counter()
            try:
                if estimate is not None:
                    # In-process estimators cannot be interrupted by a timeout anyway.
                    result: object = estimate(attempt)
                else:
                    async with asyncio.timeout(self.estimator_timeout_s):
                        result = await estimator.aestimate(attempt)
                if not isinstance(result, Score):
                    raise TypeError(f"returned {type(result).__name__}, not a demur.Score")
                score = result
            except EstimatorUnavailable as exc:
                score = Score(estimator=estimator.name, status="unavailable", detail=str(exc))
            except TimeoutError:
                score = Score(
                    estimator=estimator.name,
                    status="timeout",
                    detail=f"no score within {self.estimator_timeout_s:g}s",
                )
            except Exception as exc:
                span.record_exception(exc)
                score = Score(
                    estimator=estimator.name,
                    status="failed",
                    detail=f"{type(exc).__name__}: {exc}",
                )
            score = score.model_copy(
                update={"duration_s": time.perf_counter() - started, "calls": calls}
            )
            self.tracing.record_score(attempt_span, span, score)
            return score

    # --- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the models' resources (loaded weights, HTTP connections)."""
        for model in self.models.values():
            closer = getattr(model, "aclose", None)
            if closer is not None:
                await closer()

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


@dataclasses.dataclass(frozen=True)
class _Answered:
    """A branch's answer, with the passages and the query and request it was written from."""

    generation: Generation
    retries: int
    documents: tuple[Document, ...]
    retrieval: Retrieval | None
    query: Query
    request: GenerationRequest
    notes: tuple[str, ...] = ()


def _request_chars(request: GenerationRequest) -> int:
    if request.messages is not None:
        return sum(len(m.content) for m in request.messages)
    return len(request.prompt or "")


def _trimmed(text: str, overflow: ContextOverflowError, prompt_chars: int) -> str:
    """The passage cut at a word boundary short enough to fit, estimated from the overflow.

    Without usable token counts from the backend the passage is halved; the caller tries again
    until the prompt fits or nothing is left.
    """
    tokens, limit = overflow.prompt_tokens, overflow.limit
    if tokens and limit is not None and tokens > limit:
        chars_per_token = prompt_chars / tokens
        keep = len(text) - int((tokens - limit + 8) * chars_per_token * 1.1)
    else:
        keep = len(text) // 2
    if keep >= len(text):  # counts that would not shorten it are no estimate
        keep = len(text) // 2
    if keep <= 0:
        return ""
    cut = text.rfind(" ", 0, keep)
    return text[: cut if cut > 0 else keep].rstrip()


@dataclasses.dataclass(frozen=True)
class _BranchRun:
    """A branch as run: the Branch, its confidence before calibration, and the retries made."""

    branch: Branch
    raw: float | None
    calibrated: bool
    retries: int


class _Ledger:
    """Counts the model calls of one attempt and what they cost."""

    def __init__(self) -> None:
        self.calls = 0
        self.cost = 0.0

    def add(self, model: Model, generation: Generation) -> None:
        self.calls += 1
        self.cost += getattr(model, "price", FREE).cost(generation.usage)


# Steps, candidates and verdicts are built with model_construct: every field comes from values
# already validated (a Generation, Scores, a Decision), and validating again costs on every route.


def _trace_id(span: Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


__all__ = ["DEFAULT_ABSTAIN_MESSAGE", "Router"]

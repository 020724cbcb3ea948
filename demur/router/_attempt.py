"""One attempt of a route: plan the branches, retrieve, answer, draw samples, score, select.

The route engine decides what to attempt; this module carries an attempt out and returns its
`Step`. Model calls go through `ModelCalls`, estimators through `demur.scoring`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import Span, SpanContext

from demur._construct import construct, replace
from demur.errors import ConfigError, ContextOverflowError, ModelError, did_you_mean
from demur.protocols import (
    Attempt,
    BranchPlan,
    Calibrator,
    Estimator,
    Grounding,
    Model,
    Needs,
    Policy,
    Retriever,
)
from demur.router._calls import Ledger, ModelCalls
from demur.router._estimate import estimate_all
from demur.router._passages import request_chars, trimmed_passage
from demur.router._retrieve import RetrievalRun, retrieve
from demur.router.sampling import Sampling, settled
from demur.router.tracing import RouteTracing
from demur.scoring import ScoreCombiner
from demur.types import (
    Branch,
    Candidate,
    Completion,
    Document,
    Generation,
    GenerationRequest,
    Query,
    Retrieval,
    RetrieveMore,
    Step,
)


@dataclasses.dataclass(frozen=True)
class AttemptRunner:
    """Everything an attempt needs from its router, and the code that runs one."""

    models: Mapping[str, Model]
    policy: Policy
    grounding: Grounding
    retrievers: Mapping[str, Retriever]
    estimators: tuple[Estimator, ...]
    needs: Needs
    combiner: ScoreCombiner
    calibrator: Calibrator | None
    sampling: Sampling
    estimator_timeout_s: float
    request_for: Callable[[str, Query], GenerationRequest]
    calls: ModelCalls
    tracing: RouteTracing

    async def run(
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
            ledger = Ledger()
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
        self, index: int, model: str, run: _BranchRun, ledger: Ledger, started: float
    ) -> Step:
        branch = run.branch
        return construct(
            Step,
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
        ledger: Ledger,
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
        extra = self.grounding.followup(query, [r.branch for r in done.values()])
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
            return construct(
                Step,
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
        return construct(
            Step,
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
        ledger: Ledger,
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
                construct(Document, id=f"context-{i}", text=text)
                for i, text in enumerate(query.context)
            )
        else:
            documents = ()
        try:
            answered = await self._answer(model, plan, query, documents, retrieval, deadline)
        except ModelError as exc:
            branch = construct(
                Branch,
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
        if self.needs.samples:
            answer = generation.completions[0].text
            samples = await self._draw_samples(
                model, answered.request, answer, deadline, ledger, span
            )
        candidate = self._candidate(model, generation, samples, answered.documents)

        async def ask(request: GenerationRequest, target: Model | str | None = None) -> Generation:
            return await self._ask(model, target, request, deadline, ledger)

        attempt = Attempt(query=grounded, candidate=candidate, caller=ask)
        scores = await estimate_all(
            self.estimators,
            attempt,
            span,
            self.tracing,
            # Estimators too stop at the route's deadline.
            min(self.estimator_timeout_s, max(0.0, deadline - time.monotonic())),
            evaluated=answered.span,
        )
        raw = self.combiner.combine(scores)
        confidence = raw
        calibrated = False
        if raw is not None and self.calibrator is not None:
            confidence = min(1.0, max(0.0, float(self.calibrator.calibrate(raw))))
            calibrated = True
        branch = construct(
            Branch,
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
        return replace(query, **update)

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
                generation, retries, call_span = await self.calls.generate(model, request, deadline)
            except ContextOverflowError as exc:
                if len(documents) > 1:
                    documents, dropped = documents[:-1], dropped + 1
                    continue
                kept = ""
                if documents:
                    kept = trimmed_passage(documents[0].text, exc, request_chars(request))
                if not kept:
                    raise
                original = original or documents[0].text
                documents = (replace(documents[0], text=kept),)
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
                generation,
                retries,
                documents,
                retrieval,
                grounded,
                request,
                tuple(notes),
                call_span,
            )

    async def _retrieve(
        self, plan: BranchPlan, model: Model, query: Query, deadline: float, ledger: Ledger
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
        self, model: Model, question: str, deadline: float, ledger: Ledger
    ) -> tuple[str, bool]:
        from demur.grounding.rewrite import parse_rewrite, rewrite_request

        prompt = self.request_for(model.name, Query(question=question))
        request = rewrite_request(question, chat=prompt.messages is not None)
        try:
            generation = (await self.calls.generate(model, request, deadline)).generation
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
        price = model.price
        main = generation.completions[0]
        return construct(
            Candidate,
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
        ledger: Ledger,
        span: Span,
    ) -> tuple[Completion, ...]:
        """Draw the samples estimators asked for; adaptive sampling stops once settled.

        A failed sampling call ends the drawing: estimators see the samples drawn so far and
        say so if they are too few.
        """
        planned, sampling = self.needs.samples, self.sampling
        batch = sampling.batch_size if sampling.adaptive else planned
        threshold = self.policy.threshold_for(model.name)
        base = request.model_copy(
            update={
                "temperature": sampling.temperature,
                "logprobs": self.needs.sample_logprobs,
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
                generation = (await self.calls.generate(model, batch_request, deadline)).generation
            except ModelError as exc:
                self.tracing.record_error(span, exc)
                break
            ledger.add(model, generation)
            drawn.extend(generation.completions)
            texts = [c.text for c in drawn]
            if sampling.adaptive and settled(
                answer, texts, planned, sampling.min_samples, threshold, sampling.unanimity_level
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
        ledger: Ledger,
    ) -> Generation:
        """A model call on an estimator's behalf: retried, traced, and counted in the step."""
        if target is None:
            model = default
        elif isinstance(target, str):
            if target not in self.models:
                raise ConfigError(
                    f"an estimator asked for model '{target}', which the router does not "
                    f"have.{did_you_mean(target, self.models)}"
                )
            model = self.models[target]
        else:
            model = target
        generation = (await self.calls.generate(model, request, deadline)).generation
        ledger.add(model, generation)
        return generation


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
    span: SpanContext | None = None  # the model call that wrote the answer


@dataclasses.dataclass(frozen=True)
class _BranchRun:
    """A branch as run: the Branch, its confidence before calibration, and the retries made."""

    branch: Branch
    raw: float | None
    calibrated: bool
    retries: int

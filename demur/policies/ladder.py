"""The ladder policy: accept a confident answer, otherwise climb the next rung."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from demur._construct import construct
from demur.bases import PolicyBase
from demur.errors import ConfigError, did_you_mean
from demur.protocols import RouterSpec, RouteState
from demur.types import Abstain, Accept, AskHuman, Decision, Escalate, RetrieveMore

# Decisions are built on every route; the policy's own values need no validation.
_ACCEPT = Accept()

Rung = Escalate | RetrieveMore | AskHuman | Abstain


class ThresholdLike(Protocol):
    """A fitted threshold, such as demur.calibration.ConformalThreshold."""

    @property
    def threshold(self) -> float: ...


def _check_threshold(name: str, value: float | ThresholdLike) -> float:
    if not isinstance(value, int | float) and hasattr(value, "threshold"):
        value = value.threshold
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{name}={value} is outside [0, 1]. Confidences are probabilities: "
            "use e.g. 0.7 to accept answers at least 70% likely to be right."
        )
    return float(value)


class Ladder(PolicyBase):
    """Accept when confidence >= threshold; otherwise take the next rung in order.

    Rungs are `Escalate(model)`, `RetrieveMore(...)`, `AskHuman()` and `Abstain(message)`. An
    Escalate rung is skipped when its model was already asked, a RetrieveMore rung when it was
    already taken, and either when the budget allows no further call; when every rung is used
    up the route abstains. A step without a confidence (every estimator unavailable or
    failed, or the model call failed) counts as below threshold. A threshold may be a number
    or a fitted object with a `.threshold`, such as a ConformalThreshold.

        Ladder(threshold=0.6, per_model={"strong": 0.4},
               rungs=[RetrieveMore(k=10), RetrieveMore(retriever="mpnet-base"),
                      Escalate("strong"), AskHuman(), Abstain("I am not sure.")])
    """

    name = "ladder"

    def __init__(
        self,
        threshold: float | ThresholdLike,
        rungs: Sequence[Rung] = (Abstain(),),
        *,
        per_model: Mapping[str, float | ThresholdLike] | None = None,
    ) -> None:
        self.threshold = _check_threshold("threshold", threshold)
        self.per_model = {
            model: _check_threshold(f"per_model['{model}']", value)
            for model, value in (per_model or {}).items()
        }
        for rung in rungs:
            if not isinstance(rung, Escalate | RetrieveMore | AskHuman | Abstain):
                raise ConfigError(
                    f"ladder rungs must be Escalate, RetrieveMore, AskHuman or Abstain, "
                    f"got {rung!r}"
                )
        self.rungs = tuple(rungs)

    def threshold_for(self, model: str) -> float:
        return self.per_model.get(model, self.threshold)

    def validate(self, spec: RouterSpec) -> None:
        """ConfigError if a rung or threshold names a model, retriever or queue the router lacks."""
        models, retrievers = spec.models, spec.retrievers
        named = [r.model for r in self.rungs if isinstance(r, Escalate)] + list(self.per_model)
        named += [r.model for r in self.rungs if isinstance(r, RetrieveMore) and r.model]
        for model in named:
            if model not in models:
                raise ConfigError(
                    f"ladder refers to model '{model}', which the router does not have."
                    f"{did_you_mean(model, models)} Models: {', '.join(models)}."
                )
        if not spec.has_queue and any(isinstance(r, AskHuman) for r in self.rungs):
            raise ConfigError(
                "ladder has an AskHuman rung but the router has no review queue; "
                "pass queue=SqliteQueue('demur-queue.db') (or `queue:` in the config)."
            )
        wanted = [r for r in self.rungs if isinstance(r, RetrieveMore)]
        if wanted and not retrievers:
            raise ConfigError(
                "ladder has a RetrieveMore rung but the router has no retriever; pass "
                "retrievers=[ChromaStore().retriever('minilm-l6')] (or `retrieval:` in the config)"
            )
        for rung in wanted:
            if rung.retriever is not None and rung.retriever not in retrievers:
                raise ConfigError(
                    f"ladder refers to retriever '{rung.retriever}', which the router does not "
                    f"have.{did_you_mean(rung.retriever, retrievers)} "
                    f"Retrievers: {', '.join(retrievers)}."
                )

    def decide(self, state: RouteState) -> Decision:
        step = state.current
        threshold = self.threshold_for(step.model)
        if step.confidence is not None and step.confidence >= threshold:
            return construct(
                Decision,
                action=_ACCEPT,
                reason=f"confidence {step.confidence:.3f} >= threshold {threshold:.3f}",
                threshold=threshold,
            )
        if step.confidence is not None:
            why = f"confidence {step.confidence:.3f} < threshold {threshold:.3f}"
        elif step.error is not None:
            why = f"{step.model} failed ({step.error_type})"
        else:
            why = "no estimator could score the answer"

        skipped: list[str] = []
        taken = {s.decision.action for s in state.steps if s.decision is not None}
        for rung in self.rungs:
            if isinstance(rung, Escalate | RetrieveMore):
                if isinstance(rung, Escalate) and rung.model in state.attempted:
                    continue
                if isinstance(rung, RetrieveMore) and rung in taken:
                    continue
                blocker = state.budget_blocker()
                if blocker is not None:
                    skipped.append(f"{_describe(rung)} skipped: {blocker}")
                    continue
            reason = "; ".join([why, *skipped])
            return construct(Decision, action=rung, reason=reason, threshold=threshold)
        return Decision(
            action=Abstain(),
            reason="; ".join([why, *skipped, "no rung left"]),
            threshold=threshold,
        )

    def __repr__(self) -> str:
        rungs = ", ".join(_describe(rung) for rung in self.rungs)
        per_model = f", per_model={self.per_model}" if self.per_model else ""
        return f"Ladder(threshold={self.threshold}{per_model}, rungs=[{rungs}])"


def _describe(rung: Rung) -> str:
    if isinstance(rung, Escalate):
        return f"Escalate({rung.model!r})"
    if isinstance(rung, RetrieveMore):
        fields = rung.model_dump(exclude={"kind"}, exclude_defaults=True)
        return "RetrieveMore(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"
    if isinstance(rung, AskHuman):
        return "AskHuman()" if rung.priority == 0 else f"AskHuman(priority={rung.priority})"
    return "Abstain()" if rung.message is None else f"Abstain({rung.message!r})"

"""Where a route starts: skip the cheaper models a predictor says will fail.

    gate = PreGenerationRouter(["weak", "strong"], min_success=0.5, predictor=predictor)
    prediction = gate.start_for(Query("Who wrote Emma?"))
    prediction.start, prediction.reason   # "strong", "skips weak: P(weak)=0.21 < 0.50, ..."
    router.replace(start=prediction.start)   # or apply_start(router, prediction)

The decision only moves the start up the ladder; whichever model answers first, the router's
post-generation check (its policy) still scores the answer and escalates or asks a person as
before. A wrong prediction therefore costs a call to a stronger model than needed, never an
unchecked answer. A model without a prediction is never skipped, nor is one whose stronger
models are all predicted to do no better.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from demur.errors import ConfigError, check_range
from demur.types import Query

Probabilities = Mapping[str, float | None]


class StartPredictor(Protocol):
    """Predicts P(each model's answer succeeds) for a query, e.g. `KnnPredictor`."""

    def predict(self, query: Query | str) -> dict[str, float | None]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Prediction:
    """What the pre-generation stage predicted for one query, where it starts, and why."""

    start: str
    probabilities: Mapping[str, float | None]
    skipped: tuple[str, ...]
    reason: str
    ladder: tuple[str, ...]
    min_success: float
    predictor: str | None = None
    error: str | None = None
    saved_cost: float | None = field(default=None)

    @property
    def skips(self) -> bool:
        """Whether the route starts above the bottom of the ladder."""
        return bool(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        """As JSON, for a verdict or a log line."""
        return {
            "start": self.start,
            "probabilities": dict(self.probabilities),
            "skipped": list(self.skipped),
            "reason": self.reason,
            "ladder": list(self.ladder),
            "min_success": self.min_success,
            "predictor": self.predictor,
            "error": self.error,
            "saved_cost": self.saved_cost,
        }

    def attributes(self, prefix: str = "demur.pregen") -> dict[str, str | float | bool]:
        """Flat span attributes: start, skipped, reason and one probability per model."""
        out: dict[str, str | float | bool] = {
            f"{prefix}.start": self.start,
            f"{prefix}.skipped": ",".join(self.skipped),
            f"{prefix}.reason": self.reason,
            f"{prefix}.min_success": self.min_success,
        }
        if self.predictor is not None:
            out[f"{prefix}.predictor"] = self.predictor
        for model, p in self.probabilities.items():
            if p is not None:
                out[f"{prefix}.p.{model}"] = p
        return out


class PreGenerationRouter:
    """Picks the cheapest model of a ladder predicted to succeed with P >= `min_success`.

    `ladder` lists the models cheapest first, as the route climbs them; `costs` (optional,
    relative, e.g. mean seconds per answer) only report what a skip saves. Walking up from the
    bottom, a model is skipped when its P(success) is known, below `min_success`, and some
    stronger model is predicted to do better (or has no prediction); the first model not
    skipped is the start. `decide` is pure; `start_for` asks the `predictor` first.
    """

    def __init__(
        self,
        ladder: Sequence[str],
        *,
        min_success: float = 0.5,
        costs: Mapping[str, float | None] | None = None,
        predictor: StartPredictor | None = None,
    ) -> None:
        if isinstance(ladder, str) or not ladder:
            raise ConfigError(
                f"PreGenerationRouter(ladder={ladder!r}): give the models as a list, cheapest "
                "first, e.g. ['weak', 'strong']"
            )
        if len(set(ladder)) != len(ladder):
            raise ConfigError(f"PreGenerationRouter(ladder={list(ladder)}): a model is repeated")
        self.ladder = tuple(ladder)
        self.min_success = float(
            check_range("PreGenerationRouter", "min_success", min_success, 0, 1, lo_open=True)
        )
        self.costs = {m: c for m, c in (costs or {}).items() if m in self.ladder and c is not None}
        for model, cost in self.costs.items():
            check_range("PreGenerationRouter", f"costs['{model}']", cost, 0)
        self.predictor = predictor

    @classmethod
    def for_predictor(
        cls,
        predictor: Any,
        *,
        min_success: float = 0.5,
        ladder: Sequence[str] | None = None,
    ) -> PreGenerationRouter:
        """A router over a fitted predictor's models: by default its ladder is the models
        ordered by their mean recorded seconds (fastest first), and those are the costs."""
        costs: dict[str, float | None] = dict(getattr(predictor, "costs", {}) or {})
        if ladder is None:
            models = list(predictor.models)
            if all(costs.get(m) is not None for m in models):
                models.sort(key=lambda m: costs[m] or 0.0)
            ladder = models
        return cls(ladder, min_success=min_success, costs=costs, predictor=predictor)

    def validate(self, models: Sequence[str]) -> None:
        """ConfigError unless every ladder model is one of the router's `models`."""
        unknown = [m for m in self.ladder if m not in models]
        if unknown:
            raise ConfigError(
                f"the pre-generation ladder names {', '.join(unknown)}, which the router does "
                f"not have (models: {', '.join(models)}); pass ladder=[...] with its models"
            )

    def decide(
        self,
        probabilities: Probabilities | None,
        *,
        predictor: str | None = None,
        error: str | None = None,
    ) -> Prediction:
        """Where to start given each model's P(success) (None, or a model missing: unknown)."""
        bottom = self.ladder[0]
        if probabilities is None:
            why = f"the predictor failed ({error})" if error else "no prediction"
            return self._prediction(bottom, {}, (), f"{why}: start at {bottom}", predictor, error)
        known = {m: _known(probabilities.get(m)) for m in self.ladder}
        skipped: list[str] = []
        for i, model in enumerate(self.ladder):
            p = known[model]
            above = [known[m] for m in self.ladder[i + 1 :]]
            if not above:
                reason = f"{_below(skipped, known, self.min_success)}: start at the top, {model}"
            elif p is None:
                reason = f"no prediction for {model}: start there"
            elif p >= self.min_success:
                reason = f"P({model})={p:.2f} >= {self.min_success:.2f}: start at {model}"
            elif not any(q is None or q > p for q in above):
                reason = (
                    f"P({model})={p:.2f} < {self.min_success:.2f}, but no stronger model is "
                    f"predicted to do better: start at {model}"
                )
            else:
                skipped.append(model)
                continue
            if skipped and above:
                reason = f"{_below(skipped, known, self.min_success)}; {reason}"
            return self._prediction(model, known, tuple(skipped), reason, predictor, error)
        raise AssertionError("the ladder's last model always ends the walk")

    def start_for(self, query: Query | str) -> Prediction:
        """Predict with `predictor`, then `decide`; a failing predictor starts at the bottom."""
        if self.predictor is None:
            raise ConfigError(
                "PreGenerationRouter.start_for needs a predictor: "
                "PreGenerationRouter(ladder, predictor=KnnPredictor.load(path))"
            )
        name = self.predictor.describe()
        try:
            probabilities = self.predictor.predict(query)
        except Exception as exc:  # the route goes on from the bottom, as without this stage
            return self.decide(None, predictor=name, error=f"{type(exc).__name__}: {exc}")
        return self.decide(probabilities, predictor=name)

    async def astart_for(self, query: Query | str) -> Prediction:
        """`start_for` in a worker thread (embedding is CPU-bound)."""
        return await asyncio.to_thread(self.start_for, query)

    def _prediction(
        self,
        start: str,
        known: Mapping[str, float | None],
        skipped: tuple[str, ...],
        reason: str,
        predictor: str | None,
        error: str | None,
    ) -> Prediction:
        saved = None
        if skipped and all(m in self.costs for m in skipped):
            saved = sum(self.costs[m] or 0.0 for m in skipped)
            reason += f" (saves {saved:.3g} cost units)"
        return Prediction(
            start=start,
            probabilities=dict(known),
            skipped=skipped,
            reason=reason,
            ladder=self.ladder,
            min_success=self.min_success,
            predictor=predictor,
            error=error,
            saved_cost=saved,
        )

    def __repr__(self) -> str:
        return (
            f"PreGenerationRouter({list(self.ladder)}, min_success={self.min_success}, "
            f"predictor={self.predictor.describe() if self.predictor else None})"
        )


def _known(p: float | None) -> float | None:
    if p is None or isinstance(p, bool) or not isinstance(p, int | float) or math.isnan(p):
        return None
    return float(p)


def _below(skipped: Sequence[str], known: Mapping[str, float | None], level: float) -> str:
    if not skipped:
        return "nothing skipped"
    listed = ", ".join(f"P({m})={known[m]:.2f}" for m in skipped)
    return f"skips {', '.join(skipped)}: {listed} < {level:.2f}"


class Restartable(Protocol):
    """A router that starts at `start` and derives a copy with options changed."""

    @property
    def start(self) -> str: ...

    def replace(self, **changes: Any) -> Any: ...


R = TypeVar("R", bound=Restartable)


def apply_start(router: R, prediction: Prediction) -> R:
    """`router`, or a copy starting higher on the ladder where `prediction` says so; never a
    copy starting lower than the router's own start."""
    ladder = prediction.ladder
    if prediction.start == router.start or prediction.start not in ladder:
        return router
    if router.start in ladder and ladder.index(router.start) >= ladder.index(prediction.start):
        return router
    replaced: R = router.replace(start=prediction.start)
    return replaced


__all__ = [
    "PreGenerationRouter",
    "Prediction",
    "Probabilities",
    "Restartable",
    "StartPredictor",
    "apply_start",
]

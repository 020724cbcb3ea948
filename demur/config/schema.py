"""The router config schema: one frozen pydantic section per part of the router.

Every section rejects unknown keys with a did-you-mean hint; `load.py` turns the errors into
messages that name the file and line.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from demur.errors import ConfigError, did_you_mean, unknown_name
from demur.estimators.registry import ESTIMATORS, estimator_class
from demur.estimators.registry import build_estimator as build_registered_estimator
from demur.prompts import ChatPrompt, CompletionPrompt
from demur.protocols import FREE, Price
from demur.queue.base import ReviewQueue
from demur.queue.sqlite import SqliteQueue
from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.router import DEFAULT_ABSTAIN_MESSAGE
from demur.router.sampling import Sampling
from demur.scoring import CombineMethod
from demur.types import Abstain, AskHuman, Escalate, RetrieveMore

if TYPE_CHECKING:
    from demur.drift.monitor import DriftMonitor
    from demur.pregen import PreGenerationRouter
    from demur.routelog.log import RouteLog


class _Section(BaseModel):
    """A config section: frozen, and unknown keys are errors with a did-you-mean hint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = set(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise ValueError(
                        f"unknown option '{key}'.{did_you_mean(str(key), allowed)} "
                        f"Allowed: {', '.join(sorted(allowed))}"
                    )
        return data


# --- models ----------------------------------------------------------------------------------

PromptConfig = Annotated[ChatPrompt | CompletionPrompt, Field(discriminator="kind")]


class _ModelSection(_Section):
    max_tokens: int = Field(default=64, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    price: Price = FREE
    prompt: PromptConfig | None = None


class LlamaCppConfig(_ModelSection):
    """A local GGUF model run by llama.cpp: a built-in name or a file path."""

    kind: Literal["llama_cpp"]
    builtin: str | None = None
    path: str | None = None
    n_ctx: int | None = Field(default=None, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    chat: bool | None = None
    isolation: Literal["process", "thread"] = "process"
    extra_buffers: bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LlamaCppConfig:
        if (self.builtin is None) == (self.path is None):
            raise ValueError(
                "give exactly one of 'builtin' (e.g. smollm2-135m) or 'path' (a .gguf file)"
            )
        return self


class OpenAIConfig(_ModelSection):
    """Any OpenAI-compatible chat endpoint."""

    kind: Literal["openai"]
    base_url: str
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    provider: str = "openai"
    headers: dict[str, str] = Field(default_factory=dict)
    max_connections: int = Field(default=100, ge=1)
    http2: bool = False
    transport: Literal["auto", "aiohttp", "httpx"] = "auto"


class ScriptedReplyConfig(_Section):
    text: str
    logprobs: list[float] | None = None


class ScriptedConfig(_ModelSection):
    """A scripted model, for trying configs without weights or a server."""

    kind: Literal["scripted"]
    replies: list[ScriptedReplyConfig | str] = Field(min_length=1)


ModelConfig = Annotated[LlamaCppConfig | OpenAIConfig | ScriptedConfig, Field(discriminator="kind")]


# --- estimators, policy, queue, budget, tracing ----------------------------------------------


# Estimators whose options name files or router models: checked when the router is built.
_BUILT_LATE = frozenset({"ensemble", "judge", "verbal", "ptrue", "groundedness"})


class EstimatorConfig(BaseModel):
    """An estimator by name, with its options (e.g. {name: entropy, top_k: 5}).

    Options are the estimator class's keyword arguments, checked when the config is read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_options(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, Mapping) and "options" not in data:
            return {
                "name": data.get("name"),
                "options": {k: v for k, v in data.items() if k != "name"},
            }
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in ESTIMATORS:
            raise unknown_name("estimator", name, ESTIMATORS)
        return name

    @model_validator(mode="after")
    def _options_fit(self) -> EstimatorConfig:
        """Check the options against the class now, so errors point at the file and line."""
        accepted = [p for p in inspect.signature(estimator_class(self.name)).parameters]
        for key in self.options:
            if key not in accepted:
                raise ValueError(
                    f"unknown option '{key}' for estimator '{self.name}'."
                    f"{did_you_mean(key, accepted)} It accepts: {', '.join(accepted) or 'none'}."
                )
        if self.name not in _BUILT_LATE:
            build_registered_estimator(self.name, self.options)  # a bad value fails here
        return self


class HumanRungOptions(_Section):
    priority: int = 0


class RetrieveMoreOptions(_Section):
    """How to retrieve again: more passages, another embedding model, the cutoff, a rewrite."""

    k: int | None = Field(default=None, ge=1)
    retriever: str | None = None
    cutoff: bool = False
    rewrite: bool = False
    model: str | None = None


class RungConfig(_Section):
    """One rung: exactly one of `escalate: MODEL`, `retrieve_more: {...}`, `human: {...}` or
    `abstain: MESSAGE`."""

    escalate: str | None = None
    retrieve_more: RetrieveMoreOptions | None = None
    human: HumanRungOptions | None = None
    abstain: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, data: Any) -> Any:
        if data == "human":
            return {"human": {}}
        if data == "retrieve_more":
            return {"retrieve_more": {}}
        if data == "abstain":
            return {"abstain": DEFAULT_ABSTAIN_MESSAGE}
        if isinstance(data, str):
            raise ValueError(
                f"unknown rung '{data}'. "
                "Write `- escalate: MODEL`, `- retrieve_more: {k: 10}`, `- human` or "
                "`- abstain: MESSAGE`"
            )
        if isinstance(data, Mapping):
            for key in ("human", "retrieve_more"):
                if key in data and data.get(key) is None:
                    data = {**data, key: {}}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> RungConfig:
        keys = ("escalate", "retrieve_more", "human", "abstain")
        given = [k for k in keys if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rung takes exactly one of 'escalate', 'retrieve_more', 'human' or 'abstain', "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    def to_action(self) -> Escalate | RetrieveMore | AskHuman | Abstain:
        if self.escalate is not None:
            return Escalate(self.escalate)
        if self.retrieve_more is not None:
            return RetrieveMore(**self.retrieve_more.model_dump())
        if self.human is not None:
            return AskHuman(priority=self.human.priority)
        return Abstain(self.abstain)


class LadderConfig(_Section):
    kind: Literal["ladder"] = "ladder"
    threshold: float | Literal["conformal"]
    per_model: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Any:
        if value == "conformal":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(
                "must be a number in [0, 1] (e.g. 0.6), or 'conformal' to take the threshold "
                "from the calibration file"
            )
        return value

    rungs: list[RungConfig] = Field(
        default_factory=lambda: [RungConfig(abstain=DEFAULT_ABSTAIN_MESSAGE)]
    )


class GroundingConfig(_Section):
    """How each attempt uses retrieval: `rag`, `confident_rag` or `situated`."""

    kind: Literal["rag", "confident_rag", "situated"] = "rag"
    k: int = Field(default=5, ge=1)
    retriever: str | None = None
    """rag and situated: the retriever to use (the first embedder by default)."""
    agreement_bonus: float = Field(default=0.0, ge=0.0, le=1.0)
    """confident_rag: bonus for answers that other embedding models' branches agree with."""
    method: Literal["rcr", "scr"] = "rcr"
    """situated: rule-based (rcr) or self-guided (scr) confidence reasoning."""
    margin: float = Field(default=0.1, ge=0.0, le=1.0)


class RetrievalConfig(_Section):
    """The chroma store and one retriever (collection) per embedding model."""

    store: str = ".demur/chroma"
    url: str | None = None
    prefix: str = "demur"
    embedders: list[str] = Field(default_factory=lambda: ["minilm-l6"], min_length=1)
    cutoffs: dict[str, str] = Field(default_factory=dict)
    """Fitted ConformalCutoff files by embedder, applied by `retrieve_more: {cutoff: true}`."""
    grounding: GroundingConfig = GroundingConfig()
    allow_empty_store: bool = False
    """Build even when the store or a collection is missing or empty, answering closed-book
    (each retrieval records its error) instead of refusing to start."""

    @model_validator(mode="after")
    def _names(self) -> RetrievalConfig:
        named = [("retrieval.cutoffs", n) for n in self.cutoffs]
        if self.grounding.retriever is not None:
            named.append(("retrieval.grounding.retriever", self.grounding.retriever))
        for where, name in named:
            if name not in self.embedders:
                raise ValueError(
                    f"{where} names embedder '{name}', which is not in retrieval.embedders."
                    f"{did_you_mean(name, self.embedders)} Embedders: {', '.join(self.embedders)}"
                )
        if self.grounding.kind == "confident_rag" and len(self.embedders) < 2:
            raise ValueError(
                "grounding 'confident_rag' compares embedding models: list at least 2 in "
                "retrieval.embedders, e.g. [minilm-l6, e5-small, mpnet-base]"
            )
        return self


class QueueConfig(_Section):
    """The review queue: an SQLite file (the default) or a PostgreSQL database.

    For PostgreSQL give `dsn`, or `dsn_env`: the environment variable holding it (keeps the
    password out of the file). `lease_s` is how long a reviewer's claim lasts.
    """

    kind: Literal["sqlite", "postgres"] = "sqlite"
    path: str = ".demur/queue.db"
    dsn: str | None = None
    dsn_env: str | None = None
    lease_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _where(self) -> QueueConfig:
        if self.kind == "postgres" and (self.dsn is None) == (self.dsn_env is None):
            raise ValueError(
                "a postgres queue needs exactly one of 'dsn' (e.g. postgresql://demur@db/demur) "
                "or 'dsn_env' (the environment variable that holds it)"
            )
        if self.kind == "sqlite" and (self.dsn is not None or self.dsn_env is not None):
            raise ValueError(
                "'dsn' and 'dsn_env' are for kind: postgres; an sqlite queue has a 'path'"
            )
        return self

    def build(self) -> ReviewQueue:
        """The queue this section describes."""
        if self.kind == "sqlite":
            return SqliteQueue(self.path, lease_s=self.lease_s)
        import os

        from demur.queue.postgres import PostgresQueue

        dsn = self.dsn
        if self.dsn_env is not None:
            dsn = os.environ.get(self.dsn_env)
            if not dsn:
                raise ConfigError(
                    f"queue.dsn_env names ${self.dsn_env}, which is not set; export the "
                    "PostgreSQL DSN in it, e.g. postgresql://demur@db/demur"
                )
        assert dsn is not None
        return PostgresQueue(dsn, lease_s=self.lease_s)


class TracingConfig(_Section):
    """Where the CLI and server send traces; a library host configures its own SDK."""

    exporter: Literal["jsonl", "console", "otlp", "none"] = "jsonl"
    path: str = ".demur/traces.jsonl"
    capture_content: bool = False


class RouteLogConfig(_Section):
    """Every route and its later outcomes as training data (demur.RouteLog)."""

    path: str = ".demur/routes.jsonl"
    capture_content: bool = False
    capture_logprobs: bool = True
    max_age_days: float | None = Field(default=None, gt=0)
    max_records: int | None = Field(default=None, ge=1)

    def build(self) -> RouteLog:
        """The route log this section describes."""
        from demur.routelog.log import RouteLog

        return RouteLog(
            self.path,
            capture_content=self.capture_content,
            capture_logprobs=self.capture_logprobs,
            max_age_days=self.max_age_days,
            max_records=self.max_records,
        )


class PregenConfig(_Section):
    """Start each route where a fitted predictor says (demur.pregen): `predictor` is a file
    written by `demur predictor fit`; `ladder` defaults to its models, fastest first."""

    predictor: str
    min_success: float = Field(default=0.5, gt=0, le=1)
    ladder: list[str] | None = None

    def build(self) -> PreGenerationRouter:
        """The pre-generation stage this section describes, its predictor loaded."""
        from demur.pregen import Predictor, PreGenerationRouter

        return PreGenerationRouter.for_predictor(
            Predictor.load(self.predictor), min_success=self.min_success, ladder=self.ladder
        )


class DriftConfig(_Section):
    """The alarm on accepted answers' error (demur.drift.DriftMonitor); alpha should be the
    error rate the threshold was fitted for."""

    alpha: float = Field(default=0.1, gt=0, lt=1)
    delta: float = Field(default=0.05, gt=0, lt=1)
    margin: float | None = Field(default=None, gt=0, lt=1)
    horizon: int = Field(default=10_000, ge=1)
    window: int = Field(default=500, ge=1)

    def build(self, **options: Any) -> DriftMonitor:
        """A monitor with these settings; `options` (on_alarm, meter_provider) pass through."""
        from demur.drift.monitor import DriftMonitor

        return DriftMonitor(
            self.alpha,
            delta=self.delta,
            margin=self.margin,
            horizon=self.horizon,
            window=self.window,
            **options,
        )


class BudgetConfig(Budget, _Section):
    """Budget, rejecting unknown keys with a hint."""


class RetryConfig(RetryPolicy, _Section):
    """RetryPolicy, rejecting unknown keys with a hint."""


class SamplingConfig(Sampling, _Section):
    """Sampling, rejecting unknown keys with a hint."""


class RouterConfig(_Section):
    """The whole router, as written in demur.yaml or demur.toml."""

    models: dict[str, ModelConfig] = Field(min_length=1)
    start: str | None = None
    estimators: list[EstimatorConfig] = Field(
        default_factory=lambda: [EstimatorConfig(name="mean_logprob")]
    )
    combine: CombineMethod = "mean"
    policy: LadderConfig
    queue: QueueConfig | None = None
    retrieval: RetrievalConfig | None = None
    budget: BudgetConfig = BudgetConfig()
    retry: RetryConfig = RetryConfig()
    sampling: SamplingConfig = SamplingConfig()
    estimator_timeout_s: float = Field(default=5.0, gt=0)
    abstain_message: str = DEFAULT_ABSTAIN_MESSAGE
    calibration: str | None = None
    tracing: TracingConfig = TracingConfig()
    route_log: RouteLogConfig | None = None
    drift: DriftConfig = DriftConfig()
    pregen: PregenConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
        models = list(self.models)
        named = [("start", self.start)] if self.start is not None else []
        named += [("policy.rungs.escalate", r.escalate) for r in self.policy.rungs if r.escalate]
        named += [("policy.per_model", m) for m in self.policy.per_model]
        more = [r.retrieve_more for r in self.policy.rungs if r.retrieve_more is not None]
        named += [("policy.rungs.retrieve_more.model", r.model) for r in more if r.model]
        for where, model in named:
            if model not in self.models:
                raise ValueError(
                    f"{where} names model '{model}', which is not under 'models'."
                    f"{did_you_mean(model, models)} Models: {', '.join(models)}"
                )
        if self.policy.threshold == "conformal" and self.calibration is None:
            raise ValueError(
                "policy.threshold is 'conformal' but there is no 'calibration' file; "
                "add `calibration: calibration.json` (written by `demur calibrate`)"
            )
        if more and self.retrieval is None:
            raise ValueError(
                "policy has a 'retrieve_more' rung but there is no 'retrieval' section; add "
                "`retrieval: {embedders: [minilm-l6]}` and index documents with `demur index`"
            )
        for rung in more:
            if self.retrieval is not None and rung.retriever is not None:
                embedders = self.retrieval.embedders
                if rung.retriever not in embedders:
                    raise ValueError(
                        f"policy.rungs.retrieve_more.retriever names '{rung.retriever}', which is "
                        f"not in retrieval.embedders.{did_you_mean(rung.retriever, embedders)} "
                        f"Embedders: {', '.join(embedders)}"
                    )
        if self.queue is None and any(r.human is not None for r in self.policy.rungs):
            raise ValueError(
                "policy has a 'human' rung but there is no 'queue' section; "
                "add `queue: {path: .demur/queue.db}`"
            )
        return self

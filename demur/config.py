"""Router configuration: a validated schema, loading from YAML or TOML, and building a Router.

    router = load_router("demur.yaml")

Every section rejects unknown keys, and errors name the file, the key path, the value given,
and the likely fix:

    ConfigError: demur.yaml, line 12, policy: unknown option 'treshold'. Did you mean 'threshold'?
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from demur.errors import ConfigError, MissingDependencyError, did_you_mean, unknown_name
from demur.estimators.registry import ESTIMATORS, estimator_class
from demur.estimators.registry import build_estimator as build_registered_estimator
from demur.policies.ladder import Ladder
from demur.prompts import ChatPrompt, CompletionPrompt
from demur.protocols import FREE, Estimator, Model, Price
from demur.queue.base import ReviewQueue
from demur.queue.sqlite import SqliteQueue
from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.router import DEFAULT_ABSTAIN_MESSAGE, Router
from demur.router.sampling import Sampling
from demur.scoring import CombineMethod
from demur.types import Abstain, AskHuman, Escalate, RetrieveMore


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


# --- loading ---------------------------------------------------------------------------------


def _read(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check the path, or run without --config "
            "to use the built-in defaults"
        ) from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise MissingDependencyError("pyyaml", "yaml", "YAML configs") from None
        try:
            return yaml.safe_load(text), text
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    raise ConfigError(f"{path}: config files must end in .yaml, .yml or .toml")


def _yaml_line(text: str, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the YAML node at `loc`, skipping segments pydantic adds."""
    try:
        import yaml

        node = yaml.compose(text)
    except Exception:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            hit = next((k for k, v in node.value if k.value == str(key)), None)
            if match is None:
                continue  # a union tag such as 'llama_cpp' that is not in the file
            line = (hit or match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


def _format_location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(exc: ValidationError, source: str, text: str | None) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if p not in ("llama_cpp", "openai", "scripted")]
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        where = source
        line = None
        if text is not None and source.endswith(("yaml", "yml")):
            key = message.split("'")[1] if message.startswith("unknown option '") else None
            line = _yaml_line(text, [*error["loc"], *([key] if key else [])])
        if line is not None:
            where += f", line {line}"
        place = _format_location(loc) or "(top level)"
        given = error.get("input")
        shown = "" if isinstance(given, Mapping | list) or given is None else f" (got {given!r})"
        lines.append(f"{where}, {place}: {message}{shown}")
    count = len(lines)
    header = f"invalid router config ({count} problem{'s' if count > 1 else ''}):\n  "
    return ConfigError(header + "\n  ".join(lines))


def parse_config(data: Any, *, source: str = "<config>", text: str | None = None) -> RouterConfig:
    """Validate a config mapping; ConfigError explains every problem found."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a router config must be a mapping, got {type(data).__name__}")
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, source, text) from None


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a YAML or TOML router config."""
    path = Path(path)
    data, text = _read(path)
    return parse_config(data, source=str(path), text=text)


def default_config() -> RouterConfig:
    """The embedded defaults: SmolLM2 answers, Gemma-3 takes escalations, then a person."""
    text = resources.files("demur").joinpath("default_config.toml").read_text(encoding="utf-8")
    return parse_config(tomllib.loads(text), source="demur/default_config.toml")


# --- building --------------------------------------------------------------------------------


def build_model(name: str, config: ModelConfig) -> Model:
    """Construct one model backend from its config section."""
    prompt = config.prompt
    if isinstance(config, LlamaCppConfig):
        from demur.adapters.models.llama_cpp import LlamaCppModel

        return LlamaCppModel(
            name,
            path=config.path,
            builtin=config.builtin,
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            chat=config.chat,
            max_tokens=config.max_tokens,
            timeout_s=config.timeout_s,
            price=config.price,
            default_prompt=prompt,
            isolation=config.isolation,
            extra_buffers=config.extra_buffers,
        )
    if isinstance(config, OpenAIConfig):
        import os

        from demur.adapters.models.openai_http import OpenAICompatibleModel

        return OpenAICompatibleModel(
            name,
            base_url=config.base_url,
            model=config.model,
            api_key=os.environ.get(config.api_key_env),
            api_key_env=config.api_key_env,
            headers=config.headers,
            timeout_s=config.timeout_s,
            max_tokens=config.max_tokens,
            price=config.price,
            default_prompt=prompt,
            provider=config.provider,
        )
    from demur.adapters.models.scripted import Reply, ScriptedModel

    replies = [
        Reply(text=r)
        if isinstance(r, str)
        else Reply(text=r.text, logprobs=tuple(r.logprobs) if r.logprobs is not None else None)
        for r in config.replies
    ]
    return ScriptedModel(
        name,
        replies,
        price=config.price,
        default_prompt=prompt,
        max_tokens=config.max_tokens,
        timeout_s=config.timeout_s,
    )


def build_estimator(config: EstimatorConfig) -> Estimator:
    return build_registered_estimator(config.name, config.options)


def build_router(config: RouterConfig, **overrides: Any) -> Router:
    """A Router from a validated config. `overrides` go to Router() (e.g. tracer_provider)."""
    estimators = [build_estimator(e) for e in config.estimators]
    calibrator, threshold = None, config.policy.threshold
    if config.calibration is not None:
        from demur.calibration.bundle import CalibrationBundle

        bundle = CalibrationBundle.load(config.calibration)
        bundle.check_matches([e.name for e in estimators], config.combine)
        calibrator = bundle.calibrator
        if threshold == "conformal":
            if bundle.conformal is None:
                raise ConfigError(
                    f"{config.calibration} has no conformal threshold; rerun `demur calibrate` "
                    "without --no-conformal, or give policy.threshold as a number"
                )
            threshold = bundle.conformal.threshold
    assert not isinstance(threshold, str)
    policy = Ladder(
        threshold=threshold,
        per_model=config.policy.per_model,
        rungs=[r.to_action() for r in config.policy.rungs],
    )
    options: dict[str, Any] = {
        "start": config.start,
        "estimators": estimators,
        "combine": config.combine,
        "queue": config.queue.build() if config.queue is not None else None,
        "budget": config.budget,
        "retry": config.retry,
        "sampling": config.sampling,
        "estimator_timeout_s": config.estimator_timeout_s,
        "abstain_message": config.abstain_message,
        "capture_content": config.tracing.capture_content,
        "calibrator": calibrator,
    }
    if config.retrieval is not None:
        options["retrievers"], options["grounding"] = build_retrieval(config.retrieval)
    options.update(overrides)
    models = {name: build_model(name, section) for name, section in config.models.items()}
    return Router(models, policy=policy, **options)


def build_retrieval(config: RetrievalConfig) -> tuple[list[Any], Any]:
    """The retrievers (one chroma collection per embedder) and the grounding of a config."""
    from demur.grounding import ConfidentRag, Rag, Situated
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.cutoff import ConformalCutoff

    store = ChromaStore(config.store, url=config.url, prefix=config.prefix)
    retrievers = []
    for name in config.embedders:
        cutoff = None
        if name in config.cutoffs:
            cutoff = ConformalCutoff.load(config.cutoffs[name]).cutoff
        retrievers.append(store.retriever(name, cutoff=cutoff))
    g = config.grounding
    grounding: Any
    if g.kind == "confident_rag":
        grounding = ConfidentRag(k=g.k, agreement_bonus=g.agreement_bonus)
    elif g.kind == "situated":
        grounding = Situated(g.method, retriever=g.retriever, k=g.k, margin=g.margin)
    else:
        grounding = Rag(g.retriever, k=g.k)
    return retrievers, grounding


def load_router(path: str | Path | None = None, **overrides: Any) -> Router:
    """A Router from a config file, or from the embedded defaults when `path` is None."""
    config = default_config() if path is None else load_config(path)
    return build_router(config, **overrides)


__all__ = [
    "BudgetConfig",
    "EstimatorConfig",
    "GroundingConfig",
    "HumanRungOptions",
    "LadderConfig",
    "LlamaCppConfig",
    "ModelConfig",
    "OpenAIConfig",
    "PromptConfig",
    "QueueConfig",
    "RetrievalConfig",
    "RetrieveMoreOptions",
    "RetryConfig",
    "RouterConfig",
    "RungConfig",
    "SamplingConfig",
    "ScriptedConfig",
    "ScriptedReplyConfig",
    "TracingConfig",
    "build_estimator",
    "build_model",
    "build_retrieval",
    "build_router",
    "default_config",
    "load_config",
    "load_router",
    "parse_config",
]

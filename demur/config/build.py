"""Building a Router, and its models, estimators, policy and retrieval, from a validated config.

router = load_router("demur.yaml")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from demur.config.load import default_config, load_config
from demur.config.schema import (
    EstimatorConfig,
    LlamaCppConfig,
    ModelConfig,
    OpenAIConfig,
    RetrievalConfig,
    RouterConfig,
)
from demur.errors import ConfigError, RetrievalError
from demur.estimators.registry import build_estimator as build_registered_estimator
from demur.policies.ladder import Ladder
from demur.protocols import Estimator, Grounding, Model, Retriever
from demur.router.router import Router

logger = logging.getLogger("demur.config")


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
            max_connections=config.max_connections,
            http2=config.http2,
            transport=config.transport,
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
        "pregen": config.pregen.build() if config.pregen is not None else None,
        "route_log": config.route_log.build() if config.route_log is not None else None,
        "drift": (
            config.drift.build(meter_provider=overrides.get("meter_provider"))
            if "drift" in config.model_fields_set
            else None
        ),
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


def build_retrieval(config: RetrievalConfig) -> tuple[list[Retriever], Grounding]:
    """The retrievers (one chroma collection per embedder) and the grounding of a config."""
    from demur.grounding import ConfidentRag, Rag, Situated
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.cutoff import ConformalCutoff

    store = ChromaStore(config.store, url=config.url, prefix=config.prefix)
    retrievers: list[Retriever] = []
    for name in config.embedders:
        if not config.allow_empty_store:
            # A missing or empty collection would quietly answer every question closed-book.
            try:
                store.check_indexed(name)
            except RetrievalError as exc:
                raise type(exc)(
                    f"retrieval: {exc}. Or, to answer closed-book until it is indexed, set "
                    "`allow_empty_store: true` in the retrieval section (--allow-empty-store)"
                ) from None
        cutoff = None
        if name in config.cutoffs:
            cutoff = ConformalCutoff.load(config.cutoffs[name]).cutoff
        retrievers.append(store.retriever(name, cutoff=cutoff))
    g = config.grounding
    grounding: Grounding
    if g.kind == "confident_rag":
        grounding = ConfidentRag(k=g.k, agreement_bonus=g.agreement_bonus)
    elif g.kind == "situated":
        grounding = Situated(g.method, retriever=g.retriever, k=g.k, margin=g.margin)
    else:
        grounding = Rag(g.retriever, k=g.k)
    return retrievers, grounding


_PROVIDERS = ("tracer_provider", "meter_provider", "logger_provider")


def load_router(
    path: str | Path | None = None, *, tracing: bool = True, **overrides: Any
) -> Router:
    """A Router from a config file, or from the embedded defaults when `path` is None.

    The config's `tracing` section applies to the router as it does in the CLI: its exporter
    and file receive the router's spans, metrics and events (providers of its own, closed
    with the router; OpenTelemetry's globals are left alone). Two cases leave the SDK to the
    application instead: it installed an OpenTelemetry SDK tracer provider itself (its
    providers then serve, as they serve any Router), or it passes `tracing=False` or its own
    providers in `overrides`.
    """
    config = default_config() if path is None else load_config(path)
    if not tracing or any(name in overrides for name in _PROVIDERS) or _host_owns_tracing():
        return build_router(config, **overrides)
    from demur.telemetry import configure_telemetry

    telemetry = configure_telemetry(
        config.tracing.exporter, path=config.tracing.path, set_global=False
    )
    try:
        router = build_router(config, **telemetry.providers, **overrides)
    except BaseException:
        telemetry.shutdown()
        raise
    router.own(telemetry)
    return router


def _host_owns_tracing() -> bool:
    """Whether the application installed an OpenTelemetry SDK tracer provider globally."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    installed = isinstance(trace.get_tracer_provider(), TracerProvider)
    if installed:
        logger.info(
            "an OpenTelemetry SDK tracer provider is installed: the router uses it, and the "
            "config's `tracing` section is not applied"
        )
    return installed

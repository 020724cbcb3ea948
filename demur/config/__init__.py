"""Router configuration: a validated schema, loading from YAML or TOML, and building a Router.

    router = load_router("demur.yaml")

Every section rejects unknown keys, and errors name the file, the key path, the value given,
and the likely fix:

    ConfigError: demur.yaml, line 12, policy: unknown option 'treshold'. Did you mean 'threshold'?

`schema` holds the sections, `load` reads files, `_explain` turns validation errors into
those messages, and `build` turns a config into a Router.
"""

from __future__ import annotations

from demur.config.build import (
    build_estimator,
    build_model,
    build_retrieval,
    build_router,
    load_router,
)
from demur.config.load import default_config, load_config, parse_config
from demur.config.schema import (
    BudgetConfig,
    DriftConfig,
    EstimatorConfig,
    GroundingConfig,
    HumanRungOptions,
    LadderConfig,
    LlamaCppConfig,
    ModelConfig,
    OpenAIConfig,
    PromptConfig,
    QueueConfig,
    RetrievalConfig,
    RetrieveMoreOptions,
    RetryConfig,
    RouteLogConfig,
    RouterConfig,
    RungConfig,
    SamplingConfig,
    ScriptedConfig,
    ScriptedReplyConfig,
    TracingConfig,
)

__all__ = [
    "BudgetConfig",
    "DriftConfig",
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
    "RouteLogConfig",
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

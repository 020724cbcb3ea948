"""demur: confidence-gated routing for LLM and RAG applications.

Wrap a model call, estimate how far the answer can be trusted, and act on it by policy:
answer, retrieve more, escalate to a stronger model, hand the question to a person, or abstain.
"""

from demur._version import __version__
from demur.adapters.models.base import Model, Price
from demur.adapters.models.scripted import Reply, ScriptedModel
from demur.calibration.base import Calibrator
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    DeadlineExceededError,
    DemurError,
    EmptyCollectionError,
    EstimatorError,
    EstimatorUnavailable,
    InvalidQueryError,
    MissingDependencyError,
    MissingPackageError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    QueueError,
    RateLimitError,
    RetrievalError,
    RouteError,
    ServerError,
    TransientModelError,
)
from demur.estimators.base import Attempt, Estimator, Needs
from demur.estimators.logprob import GreedyNLL, MeanTokenEntropy, MeanTokenLogprob, MinTokenProb
from demur.grounding.base import BranchPlan, Grounding, Selection
from demur.grounding.rag import Rag
from demur.policies.base import Policy, RouteState
from demur.policies.ladder import Ladder
from demur.prompts import ChatPrompt, CompletionPrompt, FewShotExample, Prompt
from demur.queue import (
    Claim,
    InvalidPayload,
    InvalidTransition,
    LeaseExpired,
    Resolution,
    ResolutionWatcher,
    ReviewQueue,
    SqliteQueue,
    Ticket,
    TicketNotFound,
    TicketRequest,
    Webhook,
    await_verdict,
    verify_webhook,
    wait_verdict,
)
from demur.retrieval.base import Retriever
from demur.router.budget import Budget
from demur.router.combine import ScoreCombiner
from demur.router.retry import RetryPolicy
from demur.router.router import Router
from demur.router.sampling import Sampling
from demur.types import (
    Abstain,
    Accept,
    Action,
    AskHuman,
    Branch,
    Candidate,
    Completion,
    Decision,
    Document,
    Escalate,
    Generation,
    GenerationRequest,
    Message,
    Query,
    Retrieval,
    RetrieveMore,
    Score,
    Step,
    TokenAlternative,
    TokenLogprob,
    Usage,
    Verdict,
)

# Exported lazily: these modules cost import time that most users of the router never need.
_LAZY = {
    "CalibrationBundle": "demur.calibration.bundle",
    "ChromaRetriever": "demur.retrieval.chroma",
    "ChromaStore": "demur.retrieval.chroma",
    "ConfidentRag": "demur.grounding.confident_rag",
    "ConformalCutoff": "demur.retrieval.cutoff",
    "ConformalThreshold": "demur.calibration.conformal",
    "Ensemble": "demur.estimators.ensemble",
    "SampleAgreement": "demur.estimators.consistency",
    "NumSets": "demur.estimators.semantic",
    "Degree": "demur.estimators.semantic",
    "Eccentricity": "demur.estimators.semantic",
    "EigV": "demur.estimators.semantic",
    "SemanticEntropy": "demur.estimators.semantic",
    "RelevanceWeightedNLL": "demur.estimators.sar",
    "VerbalizedConfidence": "demur.estimators.verbal",
    "PTrue": "demur.estimators.ptrue",
    "LLMJudge": "demur.estimators.judge",
    "Groundedness": "demur.estimators.groundedness",
    "RetrievalSimilarity": "demur.estimators.retrieval",
    "Situated": "demur.grounding.situated",
    "HistogramBinningCalibrator": "demur.calibration.calibrators",
    "IsotonicCalibrator": "demur.calibration.calibrators",
    "PlattCalibrator": "demur.calibration.calibrators",
    "load_calibrator": "demur.calibration.calibrators",
    "JsonLinesSpanExporter": "demur.telemetry",
    "LlamaCppModel": "demur.adapters.models.llama_cpp",
    "OpenAICompatibleModel": "demur.adapters.models.openai_http",
    "PostgresQueue": "demur.queue.postgres",
    "RouterConfig": "demur.config",
    "Telemetry": "demur.telemetry",
    "configure_telemetry": "demur.telemetry",
    "load_config": "demur.config",
    "load_router": "demur.config",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'demur' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Abstain",
    "Accept",
    "Action",
    "AskHuman",
    "Attempt",
    "Branch",
    "BranchPlan",
    "Budget",
    "CalibrationBundle",
    "Calibrator",
    "Candidate",
    "ChatPrompt",
    "ChromaRetriever",
    "ChromaStore",
    "Claim",
    "Completion",
    "CompletionPrompt",
    "ConfidentRag",
    "ConfigError",
    "ConformalCutoff",
    "ConformalThreshold",
    "ContextOverflowError",
    "DeadlineExceededError",
    "Decision",
    "Degree",
    "DemurError",
    "Document",
    "Eccentricity",
    "EigV",
    "EmptyCollectionError",
    "Ensemble",
    "Escalate",
    "Estimator",
    "EstimatorError",
    "EstimatorUnavailable",
    "FewShotExample",
    "Generation",
    "GenerationRequest",
    "GreedyNLL",
    "Groundedness",
    "Grounding",
    "HistogramBinningCalibrator",
    "InvalidPayload",
    "InvalidQueryError",
    "InvalidTransition",
    "IsotonicCalibrator",
    "JsonLinesSpanExporter",
    "LLMJudge",
    "Ladder",
    "LeaseExpired",
    "LlamaCppModel",
    "MeanTokenEntropy",
    "MeanTokenLogprob",
    "Message",
    "MinTokenProb",
    "MissingDependencyError",
    "MissingPackageError",
    "Model",
    "ModelError",
    "ModelNotFoundError",
    "ModelTimeoutError",
    "Needs",
    "NumSets",
    "OpenAICompatibleModel",
    "PTrue",
    "PermanentModelError",
    "PlattCalibrator",
    "Policy",
    "PostgresQueue",
    "Price",
    "Prompt",
    "Query",
    "QueueError",
    "Rag",
    "RateLimitError",
    "RelevanceWeightedNLL",
    "Reply",
    "Resolution",
    "ResolutionWatcher",
    "Retrieval",
    "RetrievalError",
    "RetrievalSimilarity",
    "RetrieveMore",
    "Retriever",
    "RetryPolicy",
    "ReviewQueue",
    "RouteError",
    "RouteState",
    "Router",
    "RouterConfig",
    "SampleAgreement",
    "Sampling",
    "Score",
    "ScoreCombiner",
    "ScriptedModel",
    "Selection",
    "SemanticEntropy",
    "ServerError",
    "Situated",
    "SqliteQueue",
    "Step",
    "Telemetry",
    "Ticket",
    "TicketNotFound",
    "TicketRequest",
    "TokenAlternative",
    "TokenLogprob",
    "TransientModelError",
    "Usage",
    "VerbalizedConfidence",
    "Verdict",
    "Webhook",
    "__version__",
    "await_verdict",
    "configure_telemetry",
    "load_calibrator",
    "load_config",
    "load_router",
    "verify_webhook",
    "wait_verdict",
]

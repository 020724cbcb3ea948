"""demur: confidence-gated routing for LLM and RAG applications.

Wrap a model call, estimate how far the answer can be trusted, and act on it by policy:
answer, retrieve more, escalate to a stronger model, hand the question to a person, or abstain.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur._version import __version__
from demur.bases import EstimatorBase, GroundingBase, ModelBase, PolicyBase, RetrieverBase
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    DataError,
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
    UsageError,
)
from demur.estimators.logprob import GreedyNLL, MeanTokenEntropy, MeanTokenLogprob, MinTokenProb
from demur.grounding.rag import Rag
from demur.policies.basic import Always, FirstOf, HandBackOn, Threshold
from demur.policies.ladder import Ladder
from demur.prompts import ChatPrompt, CompletionPrompt, FewShotExample, Prompt
from demur.protocols import (
    Attempt,
    BranchPlan,
    Calibrator,
    Estimator,
    Grounding,
    Model,
    Needs,
    Policy,
    Price,
    Retriever,
    RouterSpec,
    RouteState,
    Selection,
)
from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.router import Router
from demur.router.sampling import Sampling
from demur.scoring import ScoreCombiner
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

if _TYPE_CHECKING:  # what the lazy exports below resolve to, for type checkers
    from demur.adapters.models.llama_cpp import LlamaCppModel
    from demur.adapters.models.openai_http import OpenAICompatibleModel
    from demur.adapters.models.scripted import Reply, ScriptedModel
    from demur.calibration.bundle import CalibrationBundle
    from demur.calibration.calibrators import (
        HistogramBinningCalibrator,
        IsotonicCalibrator,
        PlattCalibrator,
        load_calibrator,
    )
    from demur.calibration.conformal import ConformalThreshold
    from demur.config import RouterConfig, load_config, load_router
    from demur.drift.monitor import DriftMonitor
    from demur.embedders import CachedEmbedder, register_embedder, shared_embedder
    from demur.estimators.consistency import SampleAgreement
    from demur.estimators.ensemble import Ensemble, load_ensemble
    from demur.estimators.groundedness import Groundedness
    from demur.estimators.judge import LLMJudge
    from demur.estimators.ptrue import PTrue
    from demur.estimators.retrieval import RetrievalSimilarity
    from demur.estimators.sar import RelevanceWeightedNLL
    from demur.estimators.semantic import Degree, Eccentricity, EigV, NumSets, SemanticEntropy
    from demur.estimators.verbal import VerbalizedConfidence
    from demur.grounding.confident_rag import ConfidentRag
    from demur.grounding.situated import Situated
    from demur.queue.base import Claim, Resolution, ReviewQueue, Ticket, TicketRequest
    from demur.queue.errors import (
        InvalidPayload,
        InvalidTransition,
        LeaseExpired,
        TicketNotFound,
    )
    from demur.queue.postgres import PostgresQueue
    from demur.queue.sqlite import SqliteQueue
    from demur.queue.waiting import await_verdict, wait_verdict
    from demur.queue.watcher import ResolutionWatcher, Webhook, verify_webhook
    from demur.retrieval.chroma import ChromaRetriever, ChromaStore
    from demur.retrieval.cutoff import ConformalCutoff
    from demur.routelog.log import RouteLog
    from demur.routelog.logged import LoggedRouter
    from demur.telemetry import JsonLinesSpanExporter, Telemetry, configure_telemetry

# Exported lazily: these modules cost import time that most users of the router never need.
_LAZY = {
    "Reply": "demur.adapters.models.scripted",
    "ScriptedModel": "demur.adapters.models.scripted",
    "SqliteQueue": "demur.queue.sqlite",
    "Claim": "demur.queue.base",
    "Resolution": "demur.queue.base",
    "ReviewQueue": "demur.queue.base",
    "Ticket": "demur.queue.base",
    "TicketRequest": "demur.queue.base",
    "InvalidPayload": "demur.queue.errors",
    "InvalidTransition": "demur.queue.errors",
    "LeaseExpired": "demur.queue.errors",
    "TicketNotFound": "demur.queue.errors",
    "ResolutionWatcher": "demur.queue.watcher",
    "Webhook": "demur.queue.watcher",
    "verify_webhook": "demur.queue.watcher",
    "await_verdict": "demur.queue.waiting",
    "wait_verdict": "demur.queue.waiting",
    "CachedEmbedder": "demur.embedders",
    "CalibrationBundle": "demur.calibration.bundle",
    "ChromaRetriever": "demur.retrieval.chroma",
    "ChromaStore": "demur.retrieval.chroma",
    "ConfidentRag": "demur.grounding.confident_rag",
    "ConformalCutoff": "demur.retrieval.cutoff",
    "ConformalThreshold": "demur.calibration.conformal",
    "DriftMonitor": "demur.drift.monitor",
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
    "load_ensemble": "demur.estimators.ensemble",
    "JsonLinesSpanExporter": "demur.telemetry",
    "LlamaCppModel": "demur.adapters.models.llama_cpp",
    "LoggedRouter": "demur.routelog.logged",
    "OpenAICompatibleModel": "demur.adapters.models.openai_http",
    "PostgresQueue": "demur.queue.postgres",
    "RouteLog": "demur.routelog.log",
    "RouterConfig": "demur.config",
    "Telemetry": "demur.telemetry",
    "configure_telemetry": "demur.telemetry",
    "load_config": "demur.config",
    "load_router": "demur.config",
    "register_embedder": "demur.embedders",
    "shared_embedder": "demur.embedders",
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "Abstain",
    "Accept",
    "Action",
    "Always",
    "AskHuman",
    "Attempt",
    "Branch",
    "BranchPlan",
    "Budget",
    "CachedEmbedder",
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
    "DataError",
    "DeadlineExceededError",
    "Decision",
    "Degree",
    "DemurError",
    "Document",
    "DriftMonitor",
    "Eccentricity",
    "EigV",
    "EmptyCollectionError",
    "Ensemble",
    "Escalate",
    "Estimator",
    "EstimatorBase",
    "EstimatorError",
    "EstimatorUnavailable",
    "FewShotExample",
    "FirstOf",
    "Generation",
    "GenerationRequest",
    "GreedyNLL",
    "Groundedness",
    "Grounding",
    "GroundingBase",
    "HandBackOn",
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
    "LoggedRouter",
    "MeanTokenEntropy",
    "MeanTokenLogprob",
    "Message",
    "MinTokenProb",
    "MissingDependencyError",
    "MissingPackageError",
    "Model",
    "ModelBase",
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
    "PolicyBase",
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
    "RetrieverBase",
    "RetryPolicy",
    "ReviewQueue",
    "RouteError",
    "RouteLog",
    "RouteState",
    "Router",
    "RouterConfig",
    "RouterSpec",
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
    "Threshold",
    "Ticket",
    "TicketNotFound",
    "TicketRequest",
    "TokenAlternative",
    "TokenLogprob",
    "TransientModelError",
    "Usage",
    "UsageError",
    "VerbalizedConfidence",
    "Verdict",
    "Webhook",
    "__version__",
    "await_verdict",
    "configure_telemetry",
    "load_calibrator",
    "load_config",
    "load_ensemble",
    "load_router",
    "register_embedder",
    "shared_embedder",
    "verify_webhook",
    "wait_verdict",
]

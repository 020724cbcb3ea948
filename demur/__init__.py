"""demur: confidence-gated routing for LLM and RAG applications.

Wrap a model call, estimate how far the answer can be trusted, and act on it by policy:
answer, escalate to a stronger model, hand the question to a person, or abstain.
"""

from demur._version import __version__
from demur.adapters.models.base import Model, Price
from demur.adapters.models.scripted import Reply, ScriptedModel
from demur.calibration.base import Calibrator
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    DemurError,
    EstimatorError,
    EstimatorUnavailable,
    InvalidQueryError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    QueueError,
    RateLimitError,
    RouteError,
    ServerError,
    TransientModelError,
)
from demur.estimators.base import Attempt, Estimator, Needs
from demur.estimators.logprob import GreedyNLL, MeanTokenEntropy, MeanTokenLogprob, MinTokenProb
from demur.policies.base import Policy, RouteState
from demur.policies.ladder import Ladder
from demur.prompts import ChatPrompt, CompletionPrompt, FewShotExample, Prompt
from demur.queue.base import ReviewQueue, Ticket, TicketRequest
from demur.queue.sqlite import SqliteQueue
from demur.router.budget import Budget
from demur.router.combine import ScoreCombiner
from demur.router.retry import RetryPolicy
from demur.router.router import Router
from demur.types import (
    Abstain,
    Accept,
    Action,
    AskHuman,
    Candidate,
    Completion,
    Decision,
    Escalate,
    Generation,
    GenerationRequest,
    Message,
    Query,
    Score,
    Step,
    TokenAlternative,
    TokenLogprob,
    Usage,
    Verdict,
)

__all__ = [
    "Abstain",
    "Accept",
    "Action",
    "AskHuman",
    "Attempt",
    "Budget",
    "Calibrator",
    "Candidate",
    "ChatPrompt",
    "Completion",
    "CompletionPrompt",
    "ConfigError",
    "ContextOverflowError",
    "Decision",
    "DemurError",
    "Escalate",
    "Estimator",
    "EstimatorError",
    "EstimatorUnavailable",
    "FewShotExample",
    "Generation",
    "GenerationRequest",
    "GreedyNLL",
    "InvalidQueryError",
    "Ladder",
    "MeanTokenEntropy",
    "MeanTokenLogprob",
    "Message",
    "MinTokenProb",
    "MissingDependencyError",
    "Model",
    "ModelError",
    "ModelNotFoundError",
    "ModelTimeoutError",
    "Needs",
    "PermanentModelError",
    "Policy",
    "Price",
    "Prompt",
    "Query",
    "QueueError",
    "RateLimitError",
    "Reply",
    "RetryPolicy",
    "ReviewQueue",
    "RouteError",
    "RouteState",
    "Router",
    "Score",
    "ScoreCombiner",
    "ScriptedModel",
    "ServerError",
    "SqliteQueue",
    "Step",
    "Ticket",
    "TicketRequest",
    "TokenAlternative",
    "TokenLogprob",
    "TransientModelError",
    "Usage",
    "Verdict",
    "__version__",
]

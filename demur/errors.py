"""The exceptions demur raises, grouped by what the caller can do about them.

DemurError
├── ConfigError                 a usage mistake: fix the config or the call
│   └── MissingDependencyError  an optional extra is not installed
├── InvalidQueryError           the question itself cannot be routed
├── ModelError                  a model call failed
│   ├── TransientModelError     worth retrying: timeouts, rate limits, 5xx, lost connections
│   │   ├── ModelTimeoutError
│   │   ├── RateLimitError
│   │   └── ServerError
│   └── PermanentModelError     retrying will not help
│       ├── ContextOverflowError
│       ├── ModelNotFoundError
│       └── ModelCrashedError   a local model's worker process died; the next call restarts it
├── EstimatorError              an estimator failed (recorded on the step, never fatal)
│   └── EstimatorUnavailable    the estimator lacks an input it needs (e.g. logprobs)
├── RetrievalError              retrieval failed (recorded on the step; the model answers without)
│   └── EmptyCollectionError    nothing was indexed in the collection yet
├── QueueError                  the human review queue refused an operation (demur.queue.errors)
│   ├── TicketNotFound
│   ├── InvalidTransition       e.g. resolving an unclaimed ticket
│   │   └── LeaseExpired        the reviewer's lease ran out: claim it again
│   ├── InvalidPayload          too large, invalid UTF-8
│   ├── InvalidSignature        a webhook whose HMAC signature does not verify
│   └── QueueUnavailable        the queue's database cannot be reached
└── RouteError                  the route could not produce any verdict
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DemurError(Exception):
    """Root of every error demur raises on purpose."""


class ConfigError(DemurError, ValueError):
    """The router, a component, or a config file is set up wrongly."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional integration was used without its extra installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'demur[{extra}]'"
        )


class MissingPackageError(MissingDependencyError):
    """A built-in model's package is not installed; the message gives the exact install command."""

    extra_name = "all"
    noun = "model"

    def __init__(self, package: str, model: str, fix: str) -> None:
        self.package = package
        self.extra = self.extra_name
        ConfigError.__init__(
            self,
            f"the built-in {self.noun} '{model}' needs the '{package}' package, which is not "
            f"installed. Install it with: {fix}",
        )


class InvalidQueryError(DemurError, ValueError):
    """The query is empty, malformed, or cannot fit any model."""


class ModelError(DemurError):
    """A model call failed. `retries` counts the retries made before giving up."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        self.model = model
        self.retries = 0
        super().__init__(message)


class DeadlineExceededError(ModelError):
    """The route's deadline passed before the model answered; never retried."""


class TransientModelError(ModelError):
    """A failure that may go away on retry."""


class ModelTimeoutError(TransientModelError):
    """The model did not answer in time."""


class RateLimitError(TransientModelError):
    """The backend asked us to slow down (HTTP 429)."""


class ServerError(TransientModelError):
    """The backend failed on its side (HTTP 5xx) or the connection dropped."""


class PermanentModelError(ModelError):
    """A failure that retrying the same call will not fix."""


class ContextOverflowError(PermanentModelError, InvalidQueryError):
    """The prompt does not fit the model's context window.

    `prompt_tokens` and `limit` (the window less the tokens reserved for the answer), when the
    backend knows them, let the router trim a passage to fit instead of dropping it.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        prompt_tokens: int | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message, model=model)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class ModelNotFoundError(PermanentModelError, ConfigError):
    """The model file or the model name does not exist."""


class ModelCrashedError(PermanentModelError):
    """A local model's worker process died (a native crash, an out-of-memory kill); the step
    fails and the next call starts a new worker."""


class EstimatorError(DemurError):
    """An estimator failed; the router records it on the step and carries on."""


class EstimatorUnavailable(EstimatorError):
    """The estimator cannot run on this candidate (for example: no logprobs)."""


class RetrievalError(DemurError):
    """Retrieval failed: a missing or empty collection, an unreachable store, an embedding error."""


class EmptyCollectionError(RetrievalError):
    """The collection to search holds no document yet."""


class QueueError(DemurError):
    """The review queue refused an operation."""


class RouteError(DemurError):
    """The route ended without a verdict (a policy returned something impossible)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for a name that is not registered, listing what is."""
    options = sorted(choices)
    return ConfigError(
        f"unknown {kind} '{name}'.{did_you_mean(name, options)} "
        f"Known {kind}s: {', '.join(options) or '(none)'}."
    )

"""The exceptions demur raises, grouped by what the caller can do about them.

Every `DemurError` subclass is defined here; subpackages re-export the ones they raise
(`demur.queue.errors`, `demur.calibration.metrics`, ...). `(also X)` names a second parent, so
`except X` catches the class too. tests/test_errors_tree.py checks the drawing against the classes.

DemurError                                  root of every error demur raises on purpose
├── ConfigError (also ValueError)           a usage mistake: fix the config or the call
│   ├── MissingDependencyError (also ImportError)  an optional extra is not installed
│   │   └── MissingPackageError             a built-in's package is missing: run the message's fix
│   │       ├── MissingModelPackageError    a built-in model's weights
│   │       └── MissingEmbedderPackageError a built-in embedder's weights or runtime
│   ├── UsageError                          the API was misused, e.g. a sync call in an event loop
│   └── UnsupportedResponseError (also TypeError)  a LlamaIndex engine answered with no text
├── DataError (also ValueError)             not enough or unsuitable labelled data: label more
│   ├── UndefinedMetricError                e.g. AUROC when every answer is correct
│   └── NoValidThresholdError               no conformal threshold meets the guarantee
├── InvalidQueryError (also ValueError)     the question itself cannot be routed
├── ModelError                              a model call failed
│   ├── DeadlineExceededError               the route's deadline passed; never retried
│   ├── TransientModelError                 worth retrying: timeouts, rate limits, 5xx, lost links
│   │   ├── ModelTimeoutError
│   │   ├── RateLimitError
│   │   └── ServerError
│   └── PermanentModelError                 retrying will not help
│       ├── ContextOverflowError (also InvalidQueryError)  the prompt does not fit the window
│       ├── ModelNotFoundError (also ConfigError)  no such model file or model name
│       ├── ModelCrashedError               a local model's worker died; the next call restarts it
│       ├── ModelContractError              no Generation returned, or a non-demur exception raised
│       ├── EmbeddingError                  an embedder failed to load or to embed
│       ├── OutputNotTextError (also ConfigError)  a LangChain runnable returned something else
│       └── AgentToolCalls                  internal: DemurMiddleware hands tool calls back
├── EstimatorError                          an estimator failed (recorded on the step, never fatal)
│   └── EstimatorUnavailable                the estimator lacks an input it needs (e.g. logprobs)
├── RetrievalError                          retrieval failed (recorded; the model answers without)
│   └── EmptyCollectionError                nothing was indexed in the collection yet
├── QueueError                              the human review queue refused an operation
│   ├── TicketNotFound (also KeyError)      no ticket has that id
│   ├── InvalidTransition                   e.g. resolving an unclaimed ticket
│   │   └── LeaseExpired                    the reviewer's lease ran out: claim it again
│   ├── InvalidPayload (also ValueError)    too large, invalid UTF-8, or malformed
│   ├── InvalidSignature (also ValueError)  a webhook whose HMAC signature does not verify
│   ├── QueueUnavailable                    the queue's database cannot be reached
│   └── TicketWithdrawn                     the caller gave up before the commit; nothing stored
└── RouteError                              the route could not produce any verdict
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import ClassVar, TypeVar

_N = TypeVar("_N", int, float)


class DemurError(Exception):
    """Root of every error demur raises on purpose.

    `public_message` is True when the message quotes no prompt, answer or response body, so
    it may reach API clients, tickets and scores as it is (a setup mistake and its fix).
    """

    public_message: bool = False


class ConfigError(DemurError, ValueError):
    """The router, a component, or a config file is set up wrongly."""

    public_message = True


class MissingDependencyError(ConfigError, ImportError):
    """An optional integration was used without its extra installed.

    `fix` replaces the default install command (`pip install 'demur[<extra>]'`) in the message.
    """

    def __init__(self, package: str, extra: str, feature: str, *, fix: str | None = None) -> None:
        self.package = package
        self.extra = extra
        install = fix or f"pip install 'demur[{extra}]'"
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: {install}"
        )


class MissingPackageError(MissingDependencyError):
    """A built-in model's or embedder's package is not installed; the message gives the fix.

    Subclasses name the extra that holds the built-ins' runtime (`extra_name`) and what the
    built-in is (`noun`); raised directly, pass `extra` (and `noun`) explicitly.
    """

    extra_name: ClassVar[str] = "local"
    noun: ClassVar[str] = "model"

    def __init__(
        self,
        package: str,
        model: str,
        fix: str,
        *,
        extra: str | None = None,
        noun: str | None = None,
    ) -> None:
        super().__init__(
            package,
            extra or self.extra_name,
            f"the built-in {noun or self.noun} '{model}'",
            fix=fix,
        )


class MissingModelPackageError(MissingPackageError):
    """A built-in model's weights package is not installed; the message gives the exact fix."""

    extra_name = "local"
    noun = "model"


class MissingEmbedderPackageError(MissingPackageError):
    """A built-in embedder's package is not installed; the message gives the exact fix."""

    extra_name = "embeddings"
    noun = "embedder"


class UsageError(ConfigError):
    """The API was called the wrong way, e.g. a synchronous method inside a running event loop."""


class UnsupportedResponseError(ConfigError, TypeError):
    """A wrapped LlamaIndex query engine returned something other than a whole text answer."""


class DataError(DemurError, ValueError):
    """Not enough, or unsuitable, labelled data for what was asked (a metric, a threshold)."""


class UndefinedMetricError(DataError):
    """A metric is undefined on this data, e.g. AUROC when every answer is correct."""


class NoValidThresholdError(DataError):
    """No threshold meets the requested guarantee on this calibration data.

    `needed` is the least number of accepted examples for which even zero errors would do.
    """

    def __init__(self, message: str, needed: int) -> None:
        self.needed = needed
        super().__init__(message)


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


class ModelContractError(PermanentModelError):
    """A model broke the Model contract: it returned something other than a Generation with a
    completion, or raised an exception that is not demur's. The step fails; the ladder
    escalates or abstains."""


class EmbeddingError(PermanentModelError):
    """An embedding model failed to load or to embed; `model` names it and the message the fix."""


class OutputNotTextError(PermanentModelError, ConfigError):
    """A wrapped LangChain runnable returned something other than text (a dict, tool calls...).

    The route records it like any model failure; `DemurRunnable` then raises it, because the
    same runnable will fail the same way on every call.
    """


class AgentToolCalls(PermanentModelError):
    """An escalated model answered with tool calls; its response goes back to the agent.

    Internal to `DemurMiddleware` (not exported): the router records a model's failure only
    when it is a `ModelError`, and the middleware's policy ends the route on this one.
    """


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


class TicketNotFound(QueueError, KeyError):
    """No ticket has the given id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidTransition(QueueError):
    """The operation does not apply to the ticket's current state (e.g. resolving it unclaimed)."""


class LeaseExpired(InvalidTransition):
    """The lease presented has expired, or another reviewer claimed the ticket since."""


class InvalidPayload(QueueError, ValueError):
    """A ticket or a resolution breaks a size limit, is not valid UTF-8, or is malformed."""


class InvalidSignature(QueueError, ValueError):
    """A webhook delivery's signature is missing, wrong, or outside the allowed time window."""


class QueueUnavailable(QueueError):
    """The queue's database cannot be opened, reached or migrated."""


class TicketWithdrawn(QueueError):
    """An enqueue's `commit_if` said no (its route stopped waiting): nothing was stored."""


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


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _allowed(
    lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, integer: bool
) -> str:
    if lo is not None and hi is not None:
        if integer and not (lo_open or hi_open):
            return f"in {_bound(lo)}..{_bound(hi)}"
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        return f"in {left}{_bound(lo)}, {_bound(hi)}{right}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_bound(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_bound(hi)}"
    return "finite"


def check_range(
    owner: str,
    name: str,
    value: _N,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> _N:
    """`value` when it is a finite number within the bounds; else a ConfigError saying so.

    `lo` and `hi` are inclusive unless `lo_open` / `hi_open`; None leaves that side unbounded.
    With `integer`, only whole numbers pass; a bool never does. The message names the owner,
    the option, the value and the allowed range, then `hint` (why the range is what it is):
    `check_range("SampleAgreement", "samples", 0, 1, 100, integer=True)` raises
    `ConfigError("SampleAgreement(samples=0): samples must be in 1..100")`.
    """
    number = int if integer else (int, float)
    typed = isinstance(value, number) and not isinstance(value, bool)
    if (
        typed
        and math.isfinite(value)
        and (lo is None or (value > lo if lo_open else value >= lo))
        and (hi is None or (value < hi if hi_open else value <= hi))
    ):
        return value
    message = (
        f"{owner}({name}={value!r}): {name} must be {_allowed(lo, hi, lo_open, hi_open, integer)}"
    )
    if not typed:
        message += f", {'a whole number' if integer else 'a number'}, not {type(value).__name__}"
    raise ConfigError(message + (f"; {hint}" if hint else ""))

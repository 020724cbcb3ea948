"""demur for LangChain (`pip install 'demur[langchain]'`).

- `gate(model, fallback=..., estimators=..., policy=...)` / `DemurRunnable(router)`: a
  Runnable that only lets out answers the policy accepts (invoke, batch, stream and their
  async twins; composes with `|`).
- `LangChainChatModel(chat_model, name=...)` / `RunnableModel(runnable, name=...)`: any
  LangChain chat model or runnable as a demur model.
- `DemurMiddleware(estimators=..., fallback=...)`: gates the answers of an agent built with
  `langchain.agents.create_agent`.
- `DemurCallbackHandler(estimators)`: scores and traces every model call of a chain or agent;
  it observes only.
- `DemurEmbeddings("minilm-l6")`: demur's embedders as LangChain `Embeddings`, offline.

`import demur` never imports this package or LangChain. The middleware, which needs the
`langchain` package (and LangGraph), is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.errors import MissingDependencyError

try:
    import langchain_core  # noqa: F401
except ImportError:
    raise MissingDependencyError(
        "langchain-core", "langchain", "demur.integrations.langchain"
    ) from None

from demur.integrations.langchain.callbacks import DemurCallbackHandler, ScoredCall
from demur.integrations.langchain.chat_model import (
    LangChainChatModel,
    LogprobsUnavailableWarning,
    RunnableModel,
)
from demur.integrations.langchain.embeddings import DemurEmbeddings
from demur.integrations.langchain.errors import OutputNotTextError
from demur.integrations.langchain.messages import MessagesPrompt
from demur.integrations.langchain.runnable import VERDICT_EVENT, DemurRunnable, gate

if TYPE_CHECKING:
    from demur.integrations.langchain.middleware import DemurMiddleware

# The middleware needs the `langchain` package and LangGraph: imported on first use.
__getattr__, __dir__ = _lazy_exports(
    __name__, globals(), {"DemurMiddleware": "demur.integrations.langchain.middleware"}
)


__all__ = [
    "VERDICT_EVENT",
    "DemurCallbackHandler",
    "DemurEmbeddings",
    "DemurMiddleware",
    "DemurRunnable",
    "LangChainChatModel",
    "LogprobsUnavailableWarning",
    "MessagesPrompt",
    "OutputNotTextError",
    "RunnableModel",
    "ScoredCall",
    "gate",
]

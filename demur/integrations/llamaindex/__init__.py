"""LlamaIndex integration (`pip install 'demur[llamaindex]'`).

- `DemurQueryEngine`: a query engine that gates another one's answers, with the source nodes
  as the passages groundedness and retrieval estimators read;
- `LlamaIndexLLM`: a LlamaIndex LLM as a demur model (chat, complete, logprobs, errors);
- `DemurLLM`: the reverse, a demur model (a local llama.cpp one, say) as a LlamaIndex LLM that
  reports token logprobs; `DemurEmbedding`: demur's embedders as a LlamaIndex embedding model.
  Together they run an index and its query engine offline;
- `instrument`, `DemurEventHandler`, `DemurSpanHandler`: score LlamaIndex's LLM calls as they
  happen and trace them with OpenTelemetry, observing only.

Importing this package imports llama_index; `import demur` never does.
"""

from __future__ import annotations

import importlib.util

from demur.errors import MissingDependencyError

if importlib.util.find_spec("llama_index") is None or (
    importlib.util.find_spec("llama_index.core") is None
):
    raise MissingDependencyError("llama-index-core", "llamaindex", "demur's LlamaIndex integration")

from demur.integrations.llamaindex.demur_llm import DemurLLM
from demur.integrations.llamaindex.embedding import DemurEmbedding
from demur.integrations.llamaindex.instrumentation import (
    DemurEventHandler,
    DemurSpanHandler,
    Instrumentation,
    LLMEvaluation,
    instrument,
)
from demur.integrations.llamaindex.llm import LlamaIndexLLM, openai_kwargs
from demur.integrations.llamaindex.query_engine import (
    SOURCE_RETRIEVER,
    VERDICT_KEY,
    DemurQueryEngine,
    UnsupportedResponseError,
    documents_from_nodes,
)

__all__ = [
    "SOURCE_RETRIEVER",
    "VERDICT_KEY",
    "DemurEmbedding",
    "DemurEventHandler",
    "DemurLLM",
    "DemurQueryEngine",
    "DemurSpanHandler",
    "Instrumentation",
    "LLMEvaluation",
    "LlamaIndexLLM",
    "UnsupportedResponseError",
    "documents_from_nodes",
    "instrument",
    "openai_kwargs",
]

"""Gate a LangChain chain with demur: SmolLM2 answers, Gemma-3 takes what SmolLM2 is unsure of.

Both models ship in PyPI packages and run on the CPU through llama.cpp; the passage comes from
a LangChain vector store over demur's MiniLM embeddings. The gate is a LangChain Runnable, so
it composes with `|`, streams, and reports its verdict to callbacks.

    python examples/langchain_gate.py
"""

from operator import itemgetter
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from demur import LlamaCppModel, MeanTokenLogprob, MinTokenProb
from demur.integrations.langchain import VERDICT_EVENT, DemurEmbeddings, gate


class PrintVerdict(BaseCallbackHandler):
    """Prints each verdict the gate dispatches."""

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == VERDICT_EVENT:
            for step in data.steps:
                text = step.candidate.text if step.candidate else step.error
                print(f"  {step.model}: {text!r} confidence={step.confidence}")
            print(f"  verdict: {data.status} ({data.action}) from {data.model}")


gated = gate(
    LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24),
    fallback=LlamaCppModel("strong", builtin="gemma-3-270m", max_tokens=24),
    estimators=[MeanTokenLogprob(), MinTokenProb()],
    threshold=0.5,
)
# An offline vector store: demur's MiniLM embeds the passages and the question.
store = InMemoryVectorStore.from_texts(
    [
        "Jane Austen published Emma in December 1815; it was her fourth novel.",
        "Charlotte Bronte published Jane Eyre in 1847.",
        "The Eiffel Tower was completed in Paris in 1889.",
    ],
    DemurEmbeddings("minilm-l6"),
)
retriever = store.as_retriever(search_kwargs={"k": 1})
# LCEL: retrieve the passage, pick the fields the gate reads, gate, then post-process only what
# was released.
chain = (
    {"question": itemgetter("q"), "context": itemgetter("q") | retriever}
    | gated
    | RunnableLambda(lambda answer: answer.strip().rstrip("."))
)
question = {"q": "Which novel did Jane Austen publish in 1815?"}

with gated.router:
    # stream() buffers: the one chunk is the answer the policy accepted, never a draft.
    for chunk in chain.stream(question, config={"callbacks": [PrintVerdict()]}):
        print(f"released: {chunk!r}")

"""Confident RAG on embedded defaults: index passages into chromadb once per embedding model,
answer once per model's passages, keep the most confident answer; then trust a passage only
when it beats the model's own knowledge.

Everything runs offline: chromadb in a temporary folder, three embedding models and SmolLM2
from PyPI packages.

    python examples/confident_rag.py
"""

import tempfile

from demur import (
    Abstain,
    ChromaStore,
    ConfidentRag,
    Ladder,
    LlamaCppModel,
    MeanTokenLogprob,
    RetrieveMore,
    Router,
    Situated,
)
from demur.retrieval import SourceChunk, index_chunks

PASSAGES = {
    "emma": "Emma is a novel by Jane Austen, published in December 1815. It was her fourth novel.",
    "eiffel": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "kilimanjaro": "Mount Kilimanjaro in Tanzania is the highest mountain in Africa.",
    "danube": "The Danube flows through ten countries and empties into the Black Sea.",
}
EMBEDDERS = ["minilm-l6", "e5-small", "mpnet-base"]

store = ChromaStore(tempfile.mkdtemp())
chunks = [SourceChunk(id=key, text=text, source="example") for key, text in PASSAGES.items()]
report = index_chunks(chunks, store, EMBEDDERS)
print(f"indexed {len(chunks)} passages into {len(EMBEDDERS)} collections")

model = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24)
retrievers = [store.retriever(name) for name in EMBEDDERS]
policy = Ladder(threshold=0.5, rungs=[RetrieveMore(k=4), Abstain()])

confident = Router(
    [model], retrievers=retrievers, grounding=ConfidentRag(k=1),
    estimators=[MeanTokenLogprob()], policy=policy,
)  # fmt: skip
verdict = confident.route("When was the Eiffel Tower completed?")
step = verdict.steps[0]
for branch in step.branches:
    text = branch.candidate.text if branch.candidate else branch.error
    found = branch.retrieval.documents if branch.retrieval else ()
    top = found[0].id if found else "-"
    print(f"  {branch.name:<11} passage={top:<12} {text!r} confidence={branch.confidence:.3f}")
print(f"Confident RAG kept {step.branch}: {verdict.status} {verdict.answer!r}")

situated = Router(
    [model], retrievers=retrievers[:1], grounding=Situated("rcr", k=1),
    estimators=[MeanTokenLogprob()], policy=policy,
)  # fmt: skip
verdict = situated.route("Which novel did Jane Austen publish in 1815?")
step = verdict.steps[0]
print(f"situated: kept the {step.branch} answer {verdict.answer!r} ({step.selection})")
situated.close()

"""Gate a LlamaIndex query engine with demur's embedded defaults.

SmolLM2 (the defaults' "weak" model) answers inside an ordinary LlamaIndex query engine, over an
index built with demur's MiniLM embeddings: no mock, no API key. demur scores the answer by its
token logprobs and against the engine's source nodes, then follows the defaults' ladder: let it
through, ask Gemma-3 ("strong") to answer from the same source nodes, or hand the question to a
person. Offline, on the CPU; needs `demur[llamaindex,local,embeddings]`.

    python examples/llamaindex_gate.py
"""

from llama_index.core import Document, VectorStoreIndex

from demur import Groundedness, MeanTokenLogprob, MinTokenProb, load_router
from demur.integrations.llamaindex import VERDICT_KEY, DemurEmbedding, DemurLLM, DemurQueryEngine

# The embedded defaults (`demur config show`; the review queue is .demur/queue.db), with
# groundedness added and the most cautious combination: every score must clear the threshold.
router = load_router(estimators=[MeanTokenLogprob(), MinTokenProb(), Groundedness()], combine="min")
passages = [
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "Pride and Prejudice, Jane Austen's second novel, appeared in 1813.",
    "Charlotte Bronte published Jane Eyre in 1847.",
]
# demur's MiniLM embeds the passages; the router's own SmolLM2 answers inside the engine and
# hands its token logprobs on. similarity_top_k=3 retrieves every passage.
index = VectorStoreIndex.from_documents(
    [Document(text=p) for p in passages], embed_model=DemurEmbedding("minilm-l6")
)
llm = DemurLLM(router.models["weak"], max_tokens=24)
engine = index.as_query_engine(llm=llm, similarity_top_k=3)
gated = DemurQueryEngine(engine, router=router)

with router:
    response = gated.query("Which novel did Jane Austen publish in 1815?")

verdict = response.metadata[VERDICT_KEY]
print(f"source nodes: {len(response.source_nodes)}")
for step in verdict.steps:
    text = step.candidate.text if step.candidate else step.error
    scores = ", ".join(
        f"{s.estimator}={s.status}" + (f" {s.confidence:.2f}" if s.confidence is not None else "")
        for s in step.scores
    )
    action = step.decision.action.kind if step.decision else "-"
    print(f"{step.model}: {text!r} [{scores}] -> {action}")
print(f"verdict: {verdict.status}; the engine returns {response.response!r}")

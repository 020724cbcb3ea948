"""Gate a LlamaIndex query engine with demur's embedded defaults.

SmolLM2 (the defaults' "weak" model) answers inside an ordinary LlamaIndex query engine. demur
scores the answer by its token logprobs and against the engine's source nodes, then follows
the defaults' ladder: let it through, ask Gemma-3 ("strong") to answer from the same source
nodes, or hand the question to a person. Offline, on the CPU; needs `demur[llamaindex,local]`.

    python examples/llamaindex_gate.py
"""

import asyncio
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    LogProb,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

from demur import (
    GenerationRequest,
    Groundedness,
    MeanTokenLogprob,
    Message,
    MinTokenProb,
    load_router,
)
from demur.integrations.llamaindex import VERDICT_KEY, DemurQueryEngine


class DemurModelLLM(CustomLLM):
    """A LlamaIndex LLM over a demur model that passes the answer's token logprobs on."""

    model: Any

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model.name, is_chat_model=True)

    def _generate(self, request: GenerationRequest) -> tuple[str, list[list[LogProb]]]:
        request = request.model_copy(update={"max_tokens": 24, "logprobs": True})
        completion = asyncio.run(self.model.agenerate(request)).completions[0]
        logprobs = [[LogProb(token=t.token, logprob=t.logprob)] for t in completion.tokens or ()]
        return completion.text, logprobs

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        roles = {"system": "system", "assistant": "assistant"}
        turns = tuple(
            Message(role=roles.get(m.role.value, "user"), content=m.content or "") for m in messages
        )
        text, logprobs = self._generate(GenerationRequest(messages=turns))
        message = ChatMessage(role="assistant", content=text)
        return ChatResponse(message=message, logprobs=logprobs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, logprobs = self._generate(GenerationRequest(prompt=prompt))
        return CompletionResponse(text=text, logprobs=logprobs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError("this example does not stream")


# The embedded defaults (`demur config show`; the review queue is .demur/queue.db), with
# groundedness added and the most cautious combination: every score must clear the threshold.
router = load_router(estimators=[MeanTokenLogprob(), MinTokenProb(), Groundedness()], combine="min")
passages = [
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "Pride and Prejudice, Jane Austen's second novel, appeared in 1813.",
    "Charlotte Bronte published Jane Eyre in 1847.",
]
# Mock embeddings keep the example offline; similarity_top_k=3 retrieves every passage.
index = VectorStoreIndex.from_documents(
    [Document(text=p) for p in passages], embed_model=MockEmbedding(embed_dim=8)
)
engine = index.as_query_engine(llm=DemurModelLLM(model=router.models["weak"]), similarity_top_k=3)
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

"""Query rewriting: the model turns a question into a search query before retrieving again."""

from __future__ import annotations

from demur.types import GenerationRequest, Message

REWRITE_INSTRUCTION = (
    "Rewrite the question as a short search query: the key names and terms, no question words."
)


def rewrite_request(question: str, *, chat: bool) -> GenerationRequest:
    """The request that asks a model for a search query (chat or few-shot completion)."""
    if chat:
        return GenerationRequest(
            messages=(
                Message(role="system", content=REWRITE_INSTRUCTION),
                Message(role="user", content="Question: Who was the first wife of Henry VIII?"),
                Message(role="assistant", content="Henry VIII first wife"),
                Message(role="user", content=f"Question: {question}"),
            ),
            max_tokens=32,
            stop=("\n",),
        )
    prompt = (
        f"{REWRITE_INSTRUCTION}\n\n"
        "Question: Who was the first wife of Henry VIII?\nSearch query: Henry VIII first wife\n\n"
        f"Question: {question}\nSearch query:"
    )
    return GenerationRequest(prompt=prompt, max_tokens=32, stop=("\n",))


def parse_rewrite(text: str, question: str) -> tuple[str, bool]:
    """The rewritten query and whether it is usable; an empty or echoed one keeps the question."""
    query = text.strip().strip("\"'`").strip()
    if not query or query.lower() == question.strip().lower():
        return question, False
    # Search queries add words, never replace the question's meaning: keep both.
    return f"{query} {question}", True

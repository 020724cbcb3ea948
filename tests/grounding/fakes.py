"""A keyword retriever for tests: word overlap as similarity, no embedding model."""

from __future__ import annotations

from collections.abc import Mapping

from demur import Document, EmptyCollectionError
from demur.bases import RetrieverBase


class KeywordRetriever(RetrieverBase):
    """Scores passages by the share of the query's words they contain."""

    def __init__(
        self,
        name: str,
        passages: Mapping[str, str],
        *,
        languages: str = "English",
        error: BaseException | None = None,
        cutoff: float | None = None,
    ) -> None:
        self.name = name
        self.passages = dict(passages)
        self.languages = languages
        self.error = error
        self.cutoff = cutoff
        self.queries: list[tuple[str, int]] = []

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]:
        self.queries.append((query, k))
        if self.error is not None:
            raise self.error
        if not self.passages:
            raise EmptyCollectionError(f"collection {self.name} is empty")
        words = {w.strip("?.,").lower() for w in query.split()}
        scored = []
        for doc_id, text in self.passages.items():
            found = {w.strip("?.,").lower() for w in text.split()}
            scored.append((len(words & found) / max(1, len(words)), doc_id, text))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return tuple(
            Document(id=doc_id, text=text, score=score, retriever=self.name)
            for score, doc_id, text in scored[:k]
        )

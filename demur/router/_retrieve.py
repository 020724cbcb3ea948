"""One retrieval as the router runs it: pick the retriever, apply the cutoff, record failures.

A retrieval never takes the route down: a failure becomes a `Retrieval` with its `error`, and
the model answers without passages. Fallbacks taken are recorded in `Retrieval.note`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from demur.protocols import Retriever
from demur.types import Retrieval

# Below this share of ASCII letters a query is taken for a language other than English.
_LATIN_SHARE = 0.5


@dataclass(frozen=True)
class RetrievalRun:
    """What to retrieve: with which retriever, for which text, how many passages."""

    retriever: str
    query: str
    k: int
    cutoff: bool = False
    rewritten: bool = False


def english_only(retriever: Retriever) -> bool:
    """True when the retriever's embedding model only handles English well."""
    return retriever.languages == "English"


def looks_non_english(text: str) -> bool:
    """A cheap script check: most letters outside ASCII (Cyrillic, Han, Arabic, ...)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    return sum(c.isascii() for c in letters) / len(letters) < _LATIN_SHARE


def choose_retriever(
    name: str, query: str, retrievers: Mapping[str, Retriever]
) -> tuple[str, str | None]:
    """The retriever to use and a note when another was picked for the query's language."""
    if not looks_non_english(query) or not english_only(retrievers[name]):
        return name, None
    for other, retriever in retrievers.items():
        if other != name and not english_only(retriever):
            return other, f"query looks non-English: used {other} instead of English-only {name}"
    return name, f"query looks non-English but {name} handles English only; results may be poor"


async def retrieve(run: RetrievalRun, retrievers: Mapping[str, Retriever]) -> Retrieval:
    """Carry out one retrieval and record what happened."""
    started = time.perf_counter()
    name, note = choose_retriever(run.retriever, run.query, retrievers)
    retriever = retrievers[name]
    common = {"query": run.query, "retriever": name, "k": run.k, "rewritten": run.rewritten}
    try:
        documents = await retriever.aretrieve(run.query, run.k)
    except Exception as exc:
        return Retrieval(
            **common,
            error=f"{type(exc).__name__}: {exc}",
            note=note,
            duration_s=time.perf_counter() - started,
        )
    cutoff: float | None = None
    if run.cutoff:
        cutoff = retriever.cutoff
        if cutoff is None:
            note = "; ".join(filter(None, [note, f"{name} has no fitted cutoff: kept top {run.k}"]))
        else:
            documents = tuple(d for d in documents if d.score is not None and d.score >= cutoff)
    return Retrieval(
        **common,
        documents=tuple(documents),
        cutoff=cutoff,
        note=note,
        duration_s=time.perf_counter() - started,
    )

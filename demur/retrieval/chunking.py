"""Split text into overlapping chunks of words, breaking at paragraphs and sentences where cheap.

Sizes count words, not model tokens: a 200-word chunk is about 260 tokens of English, which fits
every built-in embedder (the smallest reads 256 tokens and truncates beyond).
"""

from __future__ import annotations

import re

from demur.errors import ConfigError

_PARAGRAPHS = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]»]*$")

# How good a place to break the gap before a word is, by the whitespace it stands for.
_RANK = {" ": 0, ". ": 1, "\n": 1, "\n\n": 2}


def check_chunking(size: int, overlap: int) -> None:
    """Raise ConfigError unless `size > overlap >= 0` (both in words)."""
    for field, value in (("size", size), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"chunk {field} must be a whole number of words, got {value!r}")
    if size < 1:
        raise ConfigError(f"chunk size must be at least 1 word, got size={size} (--chunk-size)")
    if not 0 <= overlap < size:
        raise ConfigError(
            f"chunk overlap must be at least 0 and smaller than the chunk size, got "
            f"overlap={overlap} with size={size}: lower --overlap or raise --chunk-size"
        )


def chunk_text(text: str, *, size: int = 200, overlap: int = 40) -> list[str]:
    """Split `text` into chunks of at most `size` words, consecutive ones sharing up to `overlap`.

    A chunk ends at the last paragraph break in its second half, else at the last sentence or
    line end there, else after exactly `size` words; the next chunk starts at the first sentence
    inside the overlap, else `overlap` words back. Paragraph breaks survive as blank lines, other
    whitespace collapses to single spaces and newlines. Blank text gives no chunk.
    """
    check_chunking(size, overlap)
    words, gaps = _split(text)
    chunks: list[str] = []
    start = 0
    while words:
        if len(words) - start <= size:
            end = len(words)
        else:
            # Never break before `overlap + 1` words, so every chunk adds at least one new word.
            end = _best_break(gaps, start + max(size // 2, overlap + 1), start + size)
        chunks.append(_join(words, gaps, start, end))
        if end == len(words):
            break
        start = _overlap_start(gaps, end - overlap, end) if overlap else end
    return chunks


def _split(text: str) -> tuple[list[str], list[str]]:
    """The words, and the gap before each: " ", ". " (a sentence end), "\\n" or "\\n\\n"."""
    words: list[str] = []
    gaps: list[str] = []
    for paragraph in _PARAGRAPHS.split(text):
        gap = "\n\n"
        for line in paragraph.splitlines():
            for word in line.split():
                if gap == " " and _SENTENCE_END.search(words[-1]):
                    gap = ". "
                words.append(word)
                gaps.append(gap)
                gap = " "
            if gap == " ":
                gap = "\n"
    return words, gaps


def _best_break(gaps: list[str], low: int, high: int) -> int:
    """The latest of the best breaks in [low, high]."""
    best = high
    for position in range(high, low - 1, -1):
        if _RANK[gaps[position]] > _RANK[gaps[best]]:
            best = position
    return best


def _overlap_start(gaps: list[str], low: int, end: int) -> int:
    """The first sentence or line start in [low, end), so the overlap opens on a whole one."""
    for position in range(low, end):
        if _RANK[gaps[position]]:
            return position
    return low


def _join(words: list[str], gaps: list[str], start: int, end: int) -> str:
    parts = [words[start]]
    for position in range(start + 1, end):
        parts.append(" " if gaps[position] == ". " else gaps[position])
        parts.append(words[position])
    return "".join(parts)

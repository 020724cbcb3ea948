"""chunk_text: chunk sizes and overlaps hold, no word is lost, breaks prefer paragraphs."""

from __future__ import annotations

import itertools

import pytest

from demur.errors import ConfigError
from demur.retrieval import chunk_text


def _words(chunks: list[str]) -> list[list[str]]:
    return [chunk.split() for chunk in chunks]


def _shared(first: list[str], second: list[str]) -> int:
    """How many words end `first` and also open `second`."""
    return max(
        (
            n
            for n in range(min(len(first), len(second)) + 1)
            if first[len(first) - n :] == second[:n]
        ),
        default=0,
    )


def _cover(chunks: list[str]) -> list[str]:
    """The text's words rebuilt from the chunks, dropping each overlap once."""
    words = _words(chunks)
    rebuilt = list(words[0])
    for previous, current in itertools.pairwise(words):
        rebuilt.extend(current[_shared(previous, current) :])
    return rebuilt


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_blank_text_gives_no_chunk(text: str) -> None:
    assert chunk_text(text) == []


def test_short_text_is_one_chunk_with_whitespace_collapsed() -> None:
    assert chunk_text("  one   two\tthree  ") == ["one two three"]
    assert chunk_text("word", size=1, overlap=0) == ["word"]


def test_exactly_size_words_is_one_chunk() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    assert chunk_text(text, size=10, overlap=3) == [text]


@pytest.mark.parametrize(("size", "overlap"), [(5, 0), (5, 1), (5, 4), (8, 3), (200, 40)])
def test_unpunctuated_words_split_at_size_and_overlap_exactly(size: int, overlap: int) -> None:
    words = [f"w{i}" for i in range(53)]
    chunks = _words(chunk_text(" ".join(words), size=size, overlap=overlap))
    assert all(len(chunk) <= size for chunk in chunks)
    for previous, current in itertools.pairwise(chunks):
        assert len(previous) == size  # no sentence to break at: every chunk but the last is full
        assert previous[size - overlap :] == current[:overlap]
    assert _cover(chunk_text(" ".join(words), size=size, overlap=overlap)) == words


def test_no_overlap_partitions_the_words() -> None:
    words = [f"w{i}" for i in range(11)]
    assert chunk_text(" ".join(words), size=4, overlap=0) == [
        "w0 w1 w2 w3",
        "w4 w5 w6 w7",
        "w8 w9 w10",
    ]


def test_breaks_at_a_paragraph_and_keeps_it_as_a_blank_line() -> None:
    first = "Alpha beta gamma delta. Epsilon zeta eta."  # 7 words
    second = "Theta iota kappa lambda. Mu nu xi omicron pi."  # 9 words
    chunks = chunk_text(f"{first}\n\n{second}", size=12, overlap=0)
    assert chunks == [first, second]
    assert chunk_text(f"{first}\n\n{second}", size=50) == [f"{first}\n\n{second}"]


def test_breaks_at_a_sentence_end_rather_than_mid_sentence() -> None:
    text = "One two three four five six. Seven eight nine ten eleven twelve thirteen."
    chunks = chunk_text(text, size=10, overlap=0)
    assert chunks == [
        "One two three four five six.",
        "Seven eight nine ten eleven twelve thirteen.",
    ]


def test_overlap_starts_on_a_whole_sentence_when_one_fits() -> None:
    text = "A b c d e f. G h. I j k l m n o p q r."
    chunks = chunk_text(text, size=8, overlap=3)
    assert chunks[0] == "A b c d e f. G h."
    assert chunks[1].startswith("G h. I j")  # the overlap is the whole sentence "G h."
    assert _cover(chunks) == text.split()


def test_line_breaks_survive_and_count_as_breaks() -> None:
    text = "# Title\n- first item here\n- second item here"
    assert chunk_text(text) == [text]
    assert chunk_text(text, size=6, overlap=0) == [
        "# Title\n- first item here",
        "- second item here",
    ]


def test_a_sentence_longer_than_size_is_cut_in_words() -> None:
    long = " ".join(f"w{i}" for i in range(25)) + "."
    chunks = _words(chunk_text(long, size=10, overlap=2))
    assert all(len(chunk) <= 10 for chunk in chunks)
    assert _cover(chunk_text(long, size=10, overlap=2)) == long.split()


def test_every_chunk_adds_new_words_even_with_a_large_overlap() -> None:
    text = " ".join(f"w{i}." for i in range(30))  # every word ends a sentence
    chunks = chunk_text(text, size=4, overlap=3)
    assert len(chunks) < 30
    assert _cover(chunks) == text.split()
    starts = [chunk.split()[0] for chunk in chunks]
    assert len(set(starts)) == len(starts)


def test_unicode_and_punctuation_survive() -> None:
    text = "Ça va? «Oui.» 東京は日本の首都です。 Done!"
    assert chunk_text(text) == [text]


@pytest.mark.parametrize(
    ("size", "overlap", "named"),
    [
        (10, 10, "overlap=10 with size=10"),
        (10, 12, "overlap=12 with size=10"),
        (10, -1, "overlap=-1"),
        (0, 0, "size=0"),
        (-5, 0, "size=-5"),
        (2.5, 0, "chunk size must be a whole number"),
        (True, 0, "chunk size must be a whole number"),
        (10, None, "chunk overlap must be a whole number"),
    ],
)
def test_bad_sizes_are_config_errors_naming_the_field(size: int, overlap: int, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        chunk_text("some words", size=size, overlap=overlap)

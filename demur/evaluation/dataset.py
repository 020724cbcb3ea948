"""The evaluation dataset format: one JSON object per line.

    {"id": "q1", "question": "Who wrote Emma?", "answers": ["Jane Austen", "Austen"],
     "context": "Emma is a novel by Jane Austen."}

- `question` (required) and `answers` (required: the gold answer and its aliases; a single
  `answer` string is accepted too). `context` is optional: a string or a list of passages.
- To score answers that already exist (logged traffic) instead of asking a model, add
  `response` (the answer given) and optionally `samples` (other sampled answers) and
  `logprobs` (the response's per-token log-probabilities).

Rows that cannot be used are reported with their line number and skipped; every other row is
kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from demur.errors import ConfigError


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answers: tuple[str, ...]
    context: tuple[str, ...] = ()
    response: str | None = None
    samples: tuple[str, ...] = ()
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, and why."""

    line: int
    message: str


@dataclass
class EvalDataset:
    items: list[EvalItem] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def has_responses(self) -> bool:
        return bool(self.items) and all(item.response is not None for item in self.items)


def _strings(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"'{name}' must be a string or a list of strings, got {value!r}")


def _item(row: object, line: int) -> EvalItem:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing 'question' (a non-empty string)")
    answers = _strings(row.get("answers", row.get("answer")), "answers")
    answers = tuple(a for a in answers if a.strip())
    if not answers:
        raise ValueError('no gold answers: add "answers": ["..."] so the row can be graded')
    response = row.get("response")
    if response is not None and not isinstance(response, str):
        raise ValueError(f"'response' must be a string, got {response!r}")
    logprobs = row.get("logprobs")
    if logprobs is not None:
        if not isinstance(logprobs, list) or not all(
            isinstance(x, int | float) and x <= 0 for x in logprobs
        ):
            raise ValueError("'logprobs' must be a list of numbers <= 0")
        logprobs = tuple(float(x) for x in logprobs)
    return EvalItem(
        id=str(row.get("id", f"line-{line}")),
        question=question,
        answers=answers,
        context=_strings(row.get("context"), "context"),
        response=response,
        samples=_strings(row.get("samples"), "samples"),
        logprobs=logprobs,
    )


def load_dataset(path: str | Path, *, limit: int | None = None) -> EvalDataset:
    """Read a JSONL dataset, skipping (and reporting) rows that cannot be used."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"dataset {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset {path} is not UTF-8 text: {exc}") from None
    dataset = EvalDataset()
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = _item(json.loads(line), number)
        except (json.JSONDecodeError, ValueError) as exc:
            dataset.problems.append(RowProblem(number, str(exc)))
            continue
        if item.id in seen:
            dataset.problems.append(RowProblem(number, f"duplicate id '{item.id}'"))
            continue
        seen.add(item.id)
        dataset.items.append(item)
        if limit is not None and len(dataset.items) >= limit:
            break
    if not dataset.items:
        details = "; ".join(f"line {p.line}: {p.message}" for p in dataset.problems[:3])
        suffix = f" ({details})" if details else ""
        raise ConfigError(f"dataset {path} has no usable rows{suffix}")
    return dataset

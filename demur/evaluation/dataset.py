"""The evaluation dataset format: one JSON object per line.

    {"id": "q1", "question": "Who wrote Emma?", "answers": ["Jane Austen", "Austen"],
     "context": "Emma is a novel by Jane Austen."}

- `question` (required) and `answers` (required: the gold answer and its aliases; a single
  `answer` string is accepted too). `context` is optional: a string or a list of passages.
- To score answers that already exist (logged traffic) instead of asking a model, add
  `response` (the answer given) and optionally `samples` (other sampled answers) and
  `logprobs` (the response's per-token log-probabilities).
- To grade logged answers yourself, add `label` (or `correct`): true/false or 1/0, whether
  `response` is right. It overrides grading against `answers`, which a labelled row may omit.

Rows that cannot be used are reported with their line number and skipped; every other row is
kept. Fields other than these are ignored, and counted so that a run can name them.

A route log (`demur.RouteLog`) is read too: each answer with an outcome becomes a row with its
`response`, `logprobs` and `label` (demur/evaluation/routelog.py).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from demur.errors import ConfigError

FIELDS = (
    "id",
    "question",
    "answers",
    "answer",
    "context",
    "response",
    "samples",
    "logprobs",
    "label",
    "correct",
)
"""The fields a row may have; any other is ignored (and reported by `unknown_fields_note`)."""


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answers: tuple[str, ...]
    context: tuple[str, ...] = ()
    response: str | None = None
    samples: tuple[str, ...] = ()
    logprobs: tuple[float, ...] | None = None
    label: bool | None = None


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, and why."""

    line: int
    message: str


@dataclass
class EvalDataset:
    items: list[EvalItem] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    unknown_fields: Counter[str] = field(default_factory=Counter)

    @property
    def has_responses(self) -> bool:
        return bool(self.items) and all(item.response is not None for item in self.items)

    @property
    def most_samples(self) -> int:
        """The largest number of logged samples on any row (0 when none are logged)."""
        return max((len(item.samples) for item in self.items), default=0)

    def unknown_fields_note(self) -> str | None:
        """One line naming the fields the rows carry that are not part of the format."""
        if not self.unknown_fields:
            return None
        named = ", ".join(
            f"'{name}' ({count} row{'s' if count > 1 else ''}{_close_field(name)})"
            for name, count in sorted(self.unknown_fields.items())
        )
        return f"ignored unknown row field(s): {named}. Known fields: {', '.join(FIELDS)}"


def _close_field(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def strings_of(value: object, name: str) -> tuple[str, ...]:
    """A row field that holds a string or a list of strings, as a tuple (empty when absent)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"'{name}' must be a string or a list of strings, got {value!r}")


def _label(row: dict[str, object]) -> bool | None:
    """The row's own grade from `label` or `correct` (true/false or 1/0), if it has one."""
    given = {key: row[key] for key in ("label", "correct") if row.get(key) is not None}
    labels = set()
    for key, value in given.items():
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            labels.add(bool(value))
        else:
            raise ValueError(f"'{key}' must be true/false or 1/0, got {value!r}")
    if len(labels) > 1:
        raise ValueError("'label' and 'correct' disagree; keep one of them")
    return labels.pop() if labels else None


def _item(row: object, line: int) -> EvalItem:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing 'question' (a non-empty string)")
    answers = strings_of(row.get("answers", row.get("answer")), "answers")
    answers = tuple(a for a in answers if a.strip())
    label = _label(row)
    if not answers and label is None:
        raise ValueError(
            'no gold answers: add "answers": ["..."], or a "label": true/false for the '
            "logged response, so the row can be graded"
        )
    response = row.get("response")
    if response is not None and not isinstance(response, str):
        raise ValueError(f"'response' must be a string, got {response!r}")
    if label is not None and response is None:
        raise ValueError("'label' grades the logged 'response', and the row has none; add it")
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
        context=strings_of(row.get("context"), "context"),
        response=response,
        samples=strings_of(row.get("samples"), "samples"),
        logprobs=logprobs,
        label=label,
    )


def load_dataset(path: str | Path, *, limit: int | None = None) -> EvalDataset:
    """Read a JSONL dataset, skipping (and reporting) rows that cannot be used. A route log
    (demur.RouteLog) is read as its labelled answers."""
    from demur.evaluation.routelog import load_route_log
    from demur.routelog.reader import is_route_log

    path = Path(path)
    if is_route_log(path):
        return load_route_log(path, limit=limit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"dataset {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset {path} is not UTF-8 text: {exc}") from None
    if not text.strip():
        raise ConfigError(
            f"dataset {path} is empty; write one JSON object per line, e.g. "
            '{"question": "Who wrote Emma?", "answers": ["Jane Austen"]}'
        )
    dataset = EvalDataset()
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if isinstance(row, dict):
                dataset.unknown_fields.update(key for key in row if key not in FIELDS)
            item = _item(row, number)
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

"""Training rows for the pre-generation predictor, from the files demur writes.

- A `demur eval` run folder (or its results.jsonl): one model's graded answers. Give one run
  per model; rows of the same question (and passages) are joined. Eval rows do not store
  passages, so they are read from the run's dataset (run.json's "dataset", or `dataset=`)
  when that file is there.
- A `demur queue export` folder: the same format, each candidate graded by the reviewer's
  verdict, with the ticket's passages.
- A route log (`demur.RouteLog`, kept with `capture_content=True`): each route with a later
  outcome, every graded step under its model, `accepted` as the route's policy decided.
- Per-question records (JSONL), one line per question with every model's outcome:

      {"question": "...", "context": ["..."],
       "weak": {"correct": false, "seconds": 1.2}, "strong": {"correct": true, "seconds": 3.4}}

  `context` is optional (a string or a list), and each model may add `accepted` (whether the
  post-generation check accepted the answer). Other fields are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from demur.errors import ConfigError
from demur.evaluation.dataset import load_dataset, strings_of
from demur.evaluation.runner import RESULTS
from demur.pregen.rows import Outcome, RoutingRow

Key = tuple[str, tuple[str, ...]]


def _context(value: object, where: str) -> tuple[str, ...]:
    try:
        return strings_of(value, "context")
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read rows from '{path}': {exc.strerror}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}, line {number}, is not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}, line {number}: expected a JSON object per line")
        rows.append((number, row))
    return rows


# --- demur eval runs and queue exports ---------------------------------------------------------


def _dataset_contexts(dataset: Path | None) -> dict[str, tuple[str, ...]]:
    if dataset is None or not dataset.is_file():
        return {}
    return {item.id: item.context for item in load_dataset(dataset).items}


def rows_from_run(path: str | Path, *, dataset: str | Path | None = None) -> list[RoutingRow]:
    """One row per graded answer of a `demur eval` run or a `demur queue export` folder."""
    from demur.evaluation.ensemble import read_results

    results = read_results(path)
    source = dataset if dataset is not None else results.settings.get("dataset")
    contexts = _dataset_contexts(Path(source)) if isinstance(source, str | Path) else {}
    default_model = results.settings.get("model")
    out = []
    for number, row in enumerate(results.rows, 1):
        where = f"{results.out_dir / RESULTS}, row {number}"
        correct = row.get("correct")
        if correct is None:
            continue  # no answer, or not graded: nothing to learn
        model = row.get("model") or default_model
        question = row.get("question")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}: no 'model' on the row or in run.json; add the model name")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{where}: 'question' is missing; it must be a non-empty string")
        context = _context(row.get("context"), where) or contexts.get(str(row.get("id")), ())
        outcome = Outcome(correct=bool(correct), seconds=_seconds(row.get("latency_s")))
        out.append(RoutingRow(question, context, {model: outcome}))
    return out


# --- per-question records -----------------------------------------------------------------------


def _outcome(value: Mapping[str, Any], where: str) -> Outcome:
    correct, accepted = value.get("correct"), value.get("accepted")
    if not isinstance(correct, bool):
        raise ConfigError(f"{where}: 'correct' must be true or false, got {correct!r}")
    if accepted is not None and not isinstance(accepted, bool):
        raise ConfigError(f"{where}: 'accepted' must be true, false or absent, got {accepted!r}")
    return Outcome(correct=correct, accepted=accepted, seconds=_seconds(value.get("seconds")))


def _record_row(record: Mapping[str, Any], at: str) -> RoutingRow:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(
            f"{at}: 'question' is missing (a non-empty string); records that index a "
            "dataset (e.g. by 'row') need the question and passages written in"
        )
    outcomes = {
        model: _outcome(value, f"{at}, model '{model}'")
        for model, value in record.items()
        if isinstance(value, Mapping) and "correct" in value
    }
    if not outcomes:
        raise ConfigError(
            f"{at}: no model outcome; add one per model, e.g. "
            '"weak": {"correct": false, "seconds": 1.2}'
        )
    return RoutingRow(question, _context(record.get("context"), at), outcomes)


def records_to_rows(
    records: Iterable[Mapping[str, Any]], where: str = "records"
) -> list[RoutingRow]:
    """Rows from per-question records: each key whose value holds a 'correct' is a model."""
    return [_record_row(record, f"{where}, record {n}") for n, record in enumerate(records, 1)]


def rows_from_records(path: str | Path) -> list[RoutingRow]:
    """Rows from a per-question records file (JSONL)."""
    path = Path(path)
    return [_record_row(record, f"{path}, line {n}") for n, record in _read_jsonl(path)]


# --- route logs ---------------------------------------------------------------------------------


def _hashed(text: object) -> bool:
    return isinstance(text, str) and text.startswith("sha256:")


def rows_from_route_log(path: str | Path) -> list[RoutingRow]:
    """Rows from a route log's labelled routes (its text must have been kept, not hashed)."""
    from demur.routelog.reader import RouteLogReader

    records = RouteLogReader(path).question_records()
    hashed = sum(1 for record in records if _hashed(record.get("question")))
    if hashed:
        raise ConfigError(
            f"route log {path}: {hashed} of {len(records)} labelled questions are kept as "
            "hashes, and the predictor needs their text; log with "
            "RouteLog(path, capture_content=True)"
        )
    for record in records:
        record["context"] = [p for p in record.get("context") or [] if not _hashed(p)]
    return records_to_rows(records, f"route log {path}")


# --- any of them ------------------------------------------------------------------------------


def merge_rows(rows: Iterable[RoutingRow]) -> list[RoutingRow]:
    """Join rows of the same question and passages into one row with every model's outcome.

    A model seen twice for one question (two runs of it, two tickets) starts another row, so
    every graded answer is kept.
    """
    merged: dict[Key, list[dict[str, Outcome]]] = {}
    for row in rows:
        group = merged.setdefault((row.question, row.context), [])
        for model, outcome in row.outcomes.items():
            slot = next((s for s in group if model not in s), None)
            if slot is None:
                slot = {}
                group.append(slot)
            slot[model] = outcome
    return [
        RoutingRow(question, context, outcomes)
        for (question, context), group in merged.items()
        for outcomes in group
    ]


def _kind(path: Path) -> str:
    """ "run" (an eval run or queue export), "route log" or "records"."""
    if path.is_dir() or path.name == RESULTS:
        return "run"
    first = next(iter(_read_jsonl(path)), None)
    if first is None:
        return "records"
    row = first[1]
    if str(row.get("kind", "")).startswith("demur."):
        return "route log"
    return "run" if "model" in row and "correct" in row else "records"


def load_routing_rows(
    paths: Sequence[str | Path], *, dataset: str | Path | None = None
) -> list[RoutingRow]:
    """Rows from eval runs, queue exports and records files, joined by question.

    A folder (or a results.jsonl, or any JSONL whose rows carry 'model' and 'correct') is read
    as a run or an export; a route log by its records' kind; any other JSONL as per-question
    records. `dataset` gives eval runs
    their passages when run.json does not point at the dataset.
    """
    if not paths:
        raise ConfigError(
            "no rows given; pass eval run folders, queue exports, route logs or records files"
        )
    rows: list[RoutingRow] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"'{path}' does not exist; pass a run folder or a JSONL file")
        kind = _kind(path)
        if kind == "run":
            rows += rows_from_run(path, dataset=dataset)
        elif kind == "route log":
            rows += rows_from_route_log(path)
        else:
            rows += rows_from_records(path)
    if not rows:
        raise ConfigError(
            f"no graded answers in {', '.join(str(p) for p in paths)}; grade the runs first"
        )
    return merge_rows(rows)


__all__ = [
    "load_routing_rows",
    "merge_rows",
    "records_to_rows",
    "rows_from_records",
    "rows_from_route_log",
    "rows_from_run",
]

"""A route log as an evaluation dataset: each labelled answer becomes a logged, labelled row.

`demur eval .demur/routes.jsonl` rescored this way replays each answer with its token
logprobs (when the log kept them) and grades it by its outcome. With text kept as hashes
(the log's default), only estimators that read logprobs have something to score.
"""

from __future__ import annotations

from pathlib import Path

from demur.errors import ConfigError
from demur.evaluation.dataset import EvalDataset, EvalItem
from demur.routelog.reader import RouteLogReader


def load_route_log(path: str | Path, *, limit: int | None = None) -> EvalDataset:
    """The labelled answers of a route log (rotated files included) as an EvalDataset."""
    dataset = EvalDataset()
    for row in RouteLogReader(path).labelled_rows():
        logprobs = row.get("logprobs")
        dataset.items.append(
            EvalItem(
                id=row["id"],
                question=row["question"] or "(no question logged)",
                answers=(),
                context=tuple(row["context"]),
                response=row["response"],
                # logprobs are <= 0; a backend's rounding may give +0.0000001
                logprobs=tuple(min(0.0, float(x)) for x in logprobs) if logprobs else None,
                label=row["correct"],
            )
        )
        if limit is not None and len(dataset.items) >= limit:
            break
    if not dataset.items:
        raise ConfigError(
            f"route log {path} has no answer with an outcome yet; record human reviews and "
            "spot checks with RouteLog.record_outcome(route_id, correct) to evaluate on it"
        )
    return dataset


__all__ = ["load_route_log"]

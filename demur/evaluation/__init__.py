"""Evaluate estimators on labelled data: run, grade, summarise, report."""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.correctness import is_correct, normalize_answer
from demur.evaluation.dataset import EvalDataset, EvalItem, RowProblem, load_dataset
from demur.evaluation.grading import JudgeGrader
from demur.evaluation.pregen_rows import (
    load_routing_rows,
    merge_rows,
    records_to_rows,
    rows_from_records,
    rows_from_route_log,
    rows_from_run,
)
from demur.evaluation.runner import EvalResults, run_eval

if TYPE_CHECKING:
    from demur.evaluation.crossfit import (
        OutOfFold,
        cross_fit_calibrated,
        cross_fit_ensemble,
        member_table,
    )
    from demur.evaluation.summary import summarize_run

# Exported lazily: the summary and cross-fitting import numpy.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    globals(),
    {
        "summarize_run": "demur.evaluation.summary",
        **dict.fromkeys(
            ("OutOfFold", "cross_fit_calibrated", "cross_fit_ensemble", "member_table"),
            "demur.evaluation.crossfit",
        ),
    },
)


__all__ = [
    "EvalDataset",
    "EvalItem",
    "EvalResults",
    "JudgeGrader",
    "OutOfFold",
    "RowProblem",
    "cross_fit_calibrated",
    "cross_fit_ensemble",
    "is_correct",
    "load_dataset",
    "load_routing_rows",
    "member_table",
    "merge_rows",
    "normalize_answer",
    "records_to_rows",
    "rows_from_records",
    "rows_from_route_log",
    "rows_from_run",
    "run_eval",
    "summarize_run",
]

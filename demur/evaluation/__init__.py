"""Evaluate estimators on labelled data: run, grade, summarise, report."""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.correctness import is_correct, normalize_answer
from demur.evaluation.dataset import EvalDataset, EvalItem, RowProblem, load_dataset
from demur.evaluation.grading import JudgeGrader
from demur.evaluation.runner import EvalResults, run_eval

if TYPE_CHECKING:
    from demur.evaluation.summary import summarize_run

# Exported lazily: the summary imports numpy.
__getattr__, __dir__ = _lazy_exports(
    __name__, globals(), {"summarize_run": "demur.evaluation.summary"}
)


__all__ = [
    "EvalDataset",
    "EvalItem",
    "EvalResults",
    "JudgeGrader",
    "RowProblem",
    "is_correct",
    "load_dataset",
    "normalize_answer",
    "run_eval",
    "summarize_run",
]

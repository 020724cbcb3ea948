"""Evaluate estimators on labelled data: run, grade, summarise, report."""

from demur.evaluation.dataset import EvalDataset, EvalItem, RowProblem, load_dataset
from demur.evaluation.grading import JudgeGrader
from demur.evaluation.runner import EvalResults, run_eval

__all__ = [
    "EvalDataset",
    "EvalItem",
    "EvalResults",
    "JudgeGrader",
    "RowProblem",
    "load_dataset",
    "run_eval",
]

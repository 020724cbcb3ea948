"""A deployable Ensemble fitted on an eval run, its members rebuilt as the run built them.

    results = read_results(".demur/eval/qa-strong")
    members = run_members(results, "num_sets:similarity=jaccard:samples=19,mean_logprob")
    fitted = fit_run_ensemble(results, members)
    fitted.ensemble.save("ensemble.json")

The run's rows give each member's confidence; what they do not say is how each estimator was
built (NumSets on Jaccard with 19 samples, or on ROUGE-L with 5). The members come from, in
order: the estimators given (objects, or a `demur eval --estimators` spec), the specs the run
recorded in run.json (`"specs": {name: {"name", "kind", "options"}}`), or, for an estimator
that takes no options, its registry name. Anything else is an error that says what to pass,
never a silent rebuild with default options. A spec that sets no samples= takes the number of
samples the run gave that estimator, and every member must need what the run recorded for it
(`needs` in run.json: samples, top-k logprobs), or the error says which options differ.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demur.errors import ConfigError, DataError
from demur.estimators._ensemble_fit import DEFAULT_FOLDS
from demur.estimators.ensemble import Ensemble
from demur.estimators.registry import (
    ESTIMATORS,
    build_estimator,
    check_unique_names,
    estimator_class,
    parse_spec_entries,
)
from demur.estimators.specs import EstimatorSpec, build_from_spec
from demur.evaluation.crossfit import OutOfFold, cross_fit_ensemble, member_table
from demur.evaluation.runner import RESULTS, SETTINGS, EvalResults
from demur.protocols import Estimator, Needs


def read_results(path: str | Path) -> EvalResults:
    """The rows and settings of a `demur eval` run: its folder, or its results.jsonl."""
    path = Path(path)
    results_file = path / RESULTS if path.is_dir() else path
    if not results_file.exists():
        raise ConfigError(f"{results_file} does not exist; run `demur eval` first")
    rows = []
    for number, line in enumerate(results_file.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{results_file}, line {number}, is not JSON: {exc.msg}") from None
    settings_file = results_file.parent / SETTINGS
    settings = json.loads(settings_file.read_text("utf-8")) if settings_file.exists() else {}
    if "estimators" not in settings:
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row.get("scores") or {}))
        settings["estimators"] = list(names)
    return EvalResults(out_dir=results_file.parent, settings=settings, rows=rows)


def _recorded(results: EvalResults, name: str) -> Estimator | None:
    """The estimator the run recorded a spec for, or one with no options, or None."""
    spec = (results.settings.get("specs") or {}).get(name)
    if spec is not None:
        return build_from_spec(EstimatorSpec.model_validate(spec))
    if name in ESTIMATORS and not inspect.signature(estimator_class(name)).parameters:
        return build_estimator(name)
    return None


def _from_spec(results: EvalResults, spec: str) -> list[Estimator]:
    """Estimators from a `demur eval --estimators` spec; one that sets no samples= takes the
    number of samples the run gave it (as `demur eval --samples` or logged samples did)."""
    recorded = results.settings.get("needs") or {}
    members = []
    for entry in parse_spec_entries(spec):
        member = entry.build()
        samples = (recorded.get(member.name) or {}).get("samples")
        if samples and "samples" not in entry.options and entry.accepts("samples"):
            member = entry.build({"samples": samples})
        members.append(member)
    check_unique_names(members)
    return members


def _check_needs(results: EvalResults, members: Sequence[Estimator]) -> None:
    """ConfigError when a member needs other inputs than the run recorded for its scores (a
    sign it was built with other options: samples, top_k)."""
    recorded = results.settings.get("needs") or {}
    for member in members:
        if member.name not in recorded:
            continue
        needs = Needs.model_validate(recorded[member.name])
        if needs != member.needs:
            raise ConfigError(
                f"{member.name} as built needs {member.needs!r}, but the run's {member.name} "
                f"needed {needs!r}: it was built with other options. Give them as `demur eval` "
                "did, e.g. --estimators num_sets:similarity=jaccard:samples=19"
            )


def run_members(
    results: EvalResults, estimators: str | Sequence[Estimator] | None = None
) -> list[Estimator]:
    """The members to fit: `estimators` (objects, or a spec such as
    'agreement:similarity=jaccard:samples=19,mean_logprob'), else every estimator of the run,
    rebuilt from what the run recorded; ConfigError naming the fix otherwise. Either way a
    member must need what the run recorded for its scores."""
    scored = list(results.estimators)
    if estimators is not None:
        members = (
            _from_spec(results, estimators) if isinstance(estimators, str) else list(estimators)
        )
        absent = [m.name for m in members if m.name not in scored]
        if absent:
            raise ConfigError(
                f"{', '.join(absent)} scored nothing in {results.out_dir}; the run scored "
                f"{', '.join(scored) or 'nothing'}. Name estimators as `demur eval` named them "
                "(agreement:similarity=jaccard is agreement_jaccard, or give name=)"
            )
        _check_needs(results, members)
        return members
    members, unknown = [], []
    for name in scored:
        member = _recorded(results, name)
        if member is None:
            unknown.append(name)
        else:
            members.append(member)
    if unknown:
        raise ConfigError(
            f"the run in {results.out_dir} does not record how {', '.join(unknown)} "
            f"{'was' if len(unknown) == 1 else 'were'} built, and rebuilding with default "
            "options could change what they score. Pass --estimators (estimators=...) with the "
            "spec given to `demur eval`, e.g. "
            "--estimators mean_logprob,entropy:top_k=5,num_sets:similarity=jaccard:samples=19"
        )
    _check_needs(results, members)
    return members


@dataclass(frozen=True)
class FittedRunEnsemble:
    """An ensemble fitted on every graded row of a run, with the procedure's cross-fitted
    confidences on the same rows (each from a fit that did not see it), or why there are none
    (too few answers of one kind for the folds)."""

    ensemble: Ensemble
    correct: np.ndarray
    cross_fitted: OutOfFold | None
    problem: str | None = None


def fit_run_ensemble(
    results: EvalResults,
    members: Sequence[Estimator],
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    C: float | None = None,
    select: bool = True,
    name: str = "ensemble",
) -> FittedRunEnsemble:
    """Fit an Ensemble of `members` on the run's graded rows, and cross-fit the same
    procedure (`folds` folds shuffled by `seed`) to say how it does on rows it has not seen."""
    rows = results.graded()
    names = [m.name for m in members]
    table = member_table(rows, names)
    correct = np.array([bool(r["correct"]) for r in rows])
    ensemble = Ensemble(members, name=name, C=C).fit(
        table,
        correct,
        model=results.settings.get("model"),
        data=str(results.out_dir),
        select=select,
        folds=folds,
        seed=seed,
    )
    try:
        out = cross_fit_ensemble(
            table, correct, members=names, folds=folds, seed=seed, C=C, select=select
        )
    except DataError as exc:
        return FittedRunEnsemble(ensemble, correct, None, f"not cross-fitted: {exc}")
    return FittedRunEnsemble(ensemble, correct, out)


__all__ = ["FittedRunEnsemble", "fit_run_ensemble", "read_results", "run_members"]

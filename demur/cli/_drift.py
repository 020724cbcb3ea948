"""`demur drift check|refit LOG`: replay a route log through the drift alarm, or refit the
calibration and threshold on its recent labelled answers."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options

if TYPE_CHECKING:
    from demur.cli._options import Commands
    from demur.config import RouterConfig
    from demur.drift.replay import DriftReport

_SOURCES = ("human", "spot_check")


def add_parser(commands: Commands) -> None:
    drift = commands.add_parser(
        "drift", help="the drift alarm on a route log: check it, or refit on the recent window"
    )
    actions = drift.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "check",
        help="replay a route log with its outcomes: error, acceptance, calibration and alarms "
        "(exit status 1 when the alarm fired)",
    )
    refit = actions.add_parser(
        "refit", help="fit a calibrator and conformal threshold on the most recent outcomes"
    )
    for sub in (check, refit):
        sub.add_argument("log", nargs="?", type=Path, help="route log (default: the config's)")
        sub.add_argument("--config", type=Path, help="router config: its route_log and drift")
        sub.add_argument(
            "--source", action="append", choices=_SOURCES, help="only these outcomes (default all)"
        )
    check.add_argument("--alpha", type=float, help="error rate to allow (default 0.1)")
    check.add_argument("--delta", type=float, help="false-alarm chance (default 0.05)")
    check.add_argument("--margin", type=float, help="error above alpha to detect (default alpha/2)")
    check.add_argument("--horizon", type=int, help="outcomes the delta covers (default 10000)")
    check.add_argument("--window", type=int, help="sliding window size (default 500)")
    check.add_argument("--since", help="only routes since this ISO date or time (a refit)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    refit.add_argument(
        "--window", type=int, default=500, help="the most recent labelled answers to fit on (500)"
    )
    refit.add_argument("--out", type=Path, default=Path("calibration.json"))
    refit.add_argument(
        "--calibration",
        type=Path,
        help="the current calibration file: refit for its estimators and combine",
    )
    refit.add_argument("--estimators", help="comma-separated (default: all the log scored)")
    refit.add_argument("--combine", help="mean, min, max or first (default mean)")
    refit.add_argument("--method", default="isotonic", help="platt, isotonic, histogram")
    refit.add_argument("--model", help="only this model's answers (a calibrator is per model)")
    refit.add_argument("--alpha", type=float, default=0.1, help="error rate to allow")
    refit.add_argument("--delta", type=float, default=0.1, help="chance the bound fails")
    refit.add_argument(
        "--conformal-share", type=float, default=0.5, help="share of rows for the threshold"
    )
    refit.add_argument("--no-conformal", action="store_true", help="only fit a calibrator")
    drift.set_defaults(run=cmd_drift)


def _config(args: argparse.Namespace) -> RouterConfig | None:
    from demur.config import load_config

    return load_config(args.config) if args.config is not None else None


def _log(args: argparse.Namespace, config: RouterConfig | None) -> Path:
    from demur.errors import ConfigError

    if args.log is not None:
        return Path(args.log)
    if config is not None and config.route_log is not None:
        return Path(config.route_log.path)
    raise ConfigError(
        "no route log: pass its path (demur drift check .demur/routes.jsonl), or a --config "
        "with a `route_log: {path: ...}` section"
    )


def cmd_drift(args: argparse.Namespace) -> int:
    config = _config(args)
    log = _log(args, config)
    if args.action == "check":
        return _check(args, config, log)
    return _refit(args, log)


def _check(args: argparse.Namespace, config: RouterConfig | None, log: Path) -> int:
    from pydantic import ValidationError

    from demur.config import DriftConfig
    from demur.drift.replay import replay_log
    from demur.errors import ConfigError

    settings = config.drift if config is not None else DriftConfig()
    given = {
        key: getattr(args, key)
        for key in ("alpha", "delta", "margin", "horizon", "window")
        if getattr(args, key) is not None
    }
    try:
        settings = DriftConfig.model_validate({**settings.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"--{e['loc'][0]} {e['input']}: {e['msg'].lower()}" for e in exc.errors()
        )
        raise ConfigError(problems) from None
    monitor = settings.build()
    report = replay_log(log, monitor, sources=args.source, since=_options.parse_since(args.since))
    if args.json:
        data = report.to_dict()
        data["settings"] = {**settings.model_dump(), "margin": monitor.margin}
        data["log"] = str(log)
        print(json.dumps(data, indent=2))
    else:
        _print_report(log, report, monitor.margin, monitor.detectable_error)
    return 1 if report.alarms else 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _print_report(log: Path, report: DriftReport, margin: float, detectable: float) -> None:
    state = report.state
    print(f"route log {log}: {state.routes} routes, {state.outcomes} judged accepted answers")
    print(
        f"acceptance {_pct(state.acceptance_rate)} over the last {state.window_routes} routes; "
        f"error of accepted answers {_pct(state.error_rate)} over the last "
        f"{state.window_outcomes} judged (alpha {state.alpha:g})"
    )
    print(
        f"sequential test (Bernoulli CUSUM, H0 error <= {state.alpha:g} vs H1 >= "
        f"{state.alpha + margin:g}; alarms eventually above {detectable:.3f}): statistic "
        f"{state.statistic:.2f} of {state.threshold:.2f}"
    )
    if not report.alarms:
        print("no alarm")
    for point in report.alarms:
        alarm = point.alarm
        print(
            f"ALARM at judged answer {alarm.outcome} (route {point.route_id}, {point.time}): "
            f"{alarm.errors_since} of {alarm.outcomes_since} wrong since judged answer "
            f"{alarm.since} ({_pct(alarm.error_since)})"
        )
    scored = [b for b in state.calibration if b.count]
    if scored:
        print(f"calibration of the last judged answers (ECE {state.ece:.3f}):")
        print("  confidence   answers  mean conf.  accuracy")
        for b in scored:
            print(
                f"  [{b.low:.1f}, {b.high:.1f})  {b.count:>7}  {b.mean_confidence:>10.3f}  "
                f"{_pct(b.accuracy):>8}"
            )
    notes = [
        f"{report.skipped_lines} unreadable lines skipped" if report.skipped_lines else "",
        f"{report.orphan_outcomes} outcomes of routes not in the log"
        if report.orphan_outcomes
        else "",
        f"{report.repeated_outcomes} repeated outcomes ignored" if report.repeated_outcomes else "",
    ]
    for note in filter(None, notes):
        print(f"note: {note}")


def _refit(args: argparse.Namespace, log: Path) -> int:
    from demur.calibration.bundle import CalibrationBundle
    from demur.cli._calibrate import config_snippet
    from demur.drift.refit import refit_from_log

    estimators = [e for e in (args.estimators or "").split(",") if e] or None
    combine = args.combine
    if args.calibration is not None:
        current = CalibrationBundle.load(args.calibration)
        estimators = estimators or list(current.estimators)
        combine = combine or current.combine
    bundle, report = refit_from_log(
        log,
        window=args.window,
        estimators=estimators,
        combine=combine or "mean",
        method=args.method,
        alpha=None if args.no_conformal else args.alpha,
        delta=args.delta,
        conformal_share=args.conformal_share,
        model=args.model,
        sources=args.source,
    )
    bundle.save(args.out)
    print(
        f"refitted on the {report['window_rows']} most recent labelled answers "
        f"({report['accepted_rows']} accepted; routes from {report['first_time']} to "
        f"{report['last_time']}); calibrator ({args.method}) on {report['calibrator_rows']} rows"
    )
    if bundle.conformal is not None:
        c = bundle.conformal
        print(
            f"conformal threshold {c.threshold:.3f} from {report['conformal_rows']} rows: error "
            f"among accepted <= {c.alpha:g} with probability >= {1 - c.delta:g}"
        )
    if report["dropped_rows"]:
        print(f"{report['dropped_rows']} rows had no score and were left out")
    print(f"written to {args.out}; route with it by putting this in the router config:")
    print(
        config_snippet(
            bundle.estimators, bundle.combine, args.out, conformal=bundle.conformal is not None
        )
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"once the router uses it, check drift afresh: demur drift check {log} --since {now}")
    return 0

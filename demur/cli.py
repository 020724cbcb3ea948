"""The `demur` command: `demur demo`, `demur ask QUESTION`, `demur index PATH`, `demur serve`,
`demur review`, `demur queue`, `demur config`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demur._version import __version__
from demur.errors import DemurError, MissingDependencyError

if TYPE_CHECKING:
    from rich.console import Console

    from demur.config import RouterConfig
    from demur.demo.runner import DemoReport, DemoRow, Guarantee
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.indexing import IndexProgress, IndexReport
    from demur.router.router import Router
    from demur.telemetry import Telemetry
    from demur.types import Step, Verdict


def _console(stderr: bool = False) -> Console:
    try:
        from rich.console import Console
    except ImportError:
        raise MissingDependencyError("rich", "cli", "The demur command") from None
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # pipes and CI logs: do not squeeze tables to 80 columns
        console = Console(stderr=stderr, highlight=False, width=max(console.width, 140))
    return console


def _load(args: argparse.Namespace) -> RouterConfig:
    from demur.config import default_config, load_config

    return default_config() if args.config is None else load_config(args.config)


def _telemetry(args: argparse.Namespace, config: RouterConfig) -> Telemetry:
    from demur.telemetry import configure_telemetry

    exporter = args.traces or config.tracing.exporter
    path = args.trace_file or config.tracing.path
    # Providers go to the router explicitly; the global ones stay the host's business.
    return configure_telemetry(exporter, path=path, service_name="demur-cli", set_global=False)


def _destination(args: argparse.Namespace, config: RouterConfig) -> str:
    exporter = args.traces or config.tracing.exporter
    return str(args.trace_file or config.tracing.path) if exporter == "jsonl" else exporter


def _router(config: RouterConfig, telemetry: Telemetry) -> Router:
    from demur.config import build_router

    return build_router(
        config,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )


def _progress(console: Console) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _fmt_conf(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _action_label(verdict: Verdict) -> str:
    return {"accept": "answer", "ask_human": "human", "abstain": "abstain"}[verdict.action]


# --- demur ask -------------------------------------------------------------------------------


def _print_steps(console: Console, verdict: Verdict) -> None:
    from rich.table import Table

    table = Table(title="Steps", show_lines=True)
    for column in ("#", "model", "answer", "scores", "confidence", "decision", "latency"):
        table.add_column(column)
    for step in verdict.steps:
        scores = "\n".join(
            f"{s.estimator}: {_fmt_conf(s.confidence)}" if s.ok else f"{s.estimator}: {s.status}"
            for s in step.scores
        )
        answer = step.candidate.text if step.candidate else f"[red]{step.error}[/red]"
        answer += "".join(f"\n[dim]{line}[/dim]" for line in _grounding_lines(step))
        decision = step.decision
        decided = f"{decision.action.kind}\n[dim]{decision.reason}[/dim]" if decision else ""
        table.add_row(
            str(step.index),
            step.model,
            answer,
            scores,
            _fmt_conf(step.confidence),
            decided,
            f"{step.latency_s:.2f}s",
        )
    console.print(table)


def _grounding_lines(step: Step) -> list[str]:
    """What was retrieved for the step, and the answers it compared, in a few short lines."""
    lines = []
    for branch in step.branches or ():
        text = branch.candidate.text if branch.candidate else branch.error_type
        chosen = " (kept)" if branch.name == step.branch else ""
        lines.append(f"{branch.name}: {text} [{_fmt_conf(branch.confidence)}]{chosen}")
    retrieval = step.retrieval
    if retrieval is not None:
        if retrieval.error is not None:
            lines.append(f"retrieval failed: {retrieval.error}")
        else:
            top = retrieval.documents[0].score if retrieval.documents else None
            lines.append(
                f"{len(retrieval.documents)} passage(s) from {retrieval.retriever}, "
                f"top similarity {_fmt_conf(top)}"
            )
        if retrieval.note:
            lines.append(retrieval.note)
    return lines


def _verdict_summary(verdict: Verdict) -> str:
    if verdict.status == "answered":
        return (
            f"[bold green]Answer[/bold green] ({verdict.model}, confidence "
            f"{_fmt_conf(verdict.confidence)}): {verdict.answer}"
        )
    if verdict.status == "pending":
        return f"[bold yellow]Sent to a person[/bold yellow]: ticket {verdict.ticket_id}"
    return f"[bold red]Abstained[/bold red]: {verdict.message}"


def cmd_ask(args: argparse.Namespace) -> int:
    from demur.types import Query

    console = _console()
    config = _load(args)
    telemetry = _telemetry(args, config)
    try:
        query = Query.coerce(args.question)
        if args.context:
            query = Query(args.question, context=tuple(args.context))
        with _router(config, telemetry) as router:  # closed even when the route raises
            verdict = router.route(query)
    finally:
        telemetry.shutdown()
    if args.json:
        print(verdict.model_dump_json(indent=2))
        return 0
    _print_steps(console, verdict)
    console.print(_verdict_summary(verdict))
    console.print(f"[dim]trace {verdict.trace_id} → {_destination(args, config)}[/dim]")
    return 0


# --- demur demo ------------------------------------------------------------------------------


def _demo_table(report: DemoReport) -> Any:
    from rich.table import Table

    table = Table(title=f"demur demo: {len(report.rows)} HaluEval-QA questions")
    table.add_column("#", justify="right", min_width=2)
    for column, width in (("question", 44), ("gold", 20), ("answer", 28)):
        table.add_column(column, max_width=width, no_wrap=True, overflow="ellipsis")
    for column, width in (("conf", 4), ("action", 9), ("model", 6), ("ok", 2)):
        table.add_column(column, min_width=width, no_wrap=True)
    for i, row in enumerate(report.rows, 1):
        verdict = row.verdict
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "—"}[row.correct]
        answer = verdict.answer or (
            f"[yellow]ticket {verdict.ticket_id[:8]}[/yellow]" if verdict.ticket_id else "—"
        )
        table.add_row(
            str(i),
            row.question.question,
            row.question.answers[0],
            answer,
            _fmt_conf(verdict.confidence),
            _action_label(verdict) + (" ↑" if verdict.escalated else ""),
            verdict.model or "—",
            mark,
        )
    return table


def _demo_summary(report: DemoReport) -> Any:
    from rich.table import Table

    summary = report.to_json()
    n = len(report.rows)
    table = Table(title="Summary", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("answered", f"{report.count('answered')}/{n} (coverage {report.coverage:.0%})")
    table.add_row("escalated", f"{report.escalated}/{n}")
    table.add_row("sent to a person", f"{report.count('pending')}/{n}")
    table.add_row("abstained", f"{report.count('abstained')}/{n}")
    accuracy = report.answered_accuracy
    table.add_row(
        "accuracy of answered", "—" if accuracy is None else f"{accuracy:.0%} (routed by demur)"
    )
    for model in report.models:
        table.add_row(f"accuracy, always {model}", f"{report.baseline_accuracy(model):.0%}")
    for model in report.models:
        table.add_row(f"questions asked of {model}", f"{report.reached(model)}/{n}")
    guarantee = report.guarantee_json()
    if guarantee is not None:
        error = guarantee["observed_error"]
        observed = "no answers"
        if error is not None:
            observed = (
                f"observed {error:.0%} of {guarantee['answered']} answers (95% upper bound "
                f"{guarantee['error_upper_95']:.0%})"
            )
        verdict = "[green]held[/green]" if guarantee["held"] else "[red]above alpha here[/red]"
        table.add_row(
            "error guarantee",
            f"answered error <= {guarantee['alpha']:.0%} with probability "
            f">= {1 - guarantee['delta']:.0%} (thresholds fitted on {guarantee['fitted_on']}); "
            f"{observed}: {verdict}",
        )
    largest = report.models[-1]
    table.add_row(
        "model-seconds",
        f"{report.route_s:.0f}s routed by demur vs {report.baseline_s(largest):.0f}s "
        f"for always {largest}",
    )
    table.add_row(
        "wall time",
        f"{report.wall_s:.1f}s in all; {summary['route_seconds_per_question']:.2f}s per routed "
        "question (the rest computes the always-one-model baselines)",
    )
    return table


def _demo_guarantee(router: Router) -> Guarantee | None:
    """The default thresholds' error guarantee, when the router runs with those thresholds."""
    from demur.demo.runner import default_guarantee
    from demur.policies.ladder import Ladder

    guarantee = default_guarantee()
    policy = router.policy
    if isinstance(policy, Ladder) and dict(policy.per_model) == dict(guarantee.thresholds):
        return guarantee
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from demur.demo.runner import load_questions, run_demo

    console = _console()
    config = _load(args)
    questions = load_questions(args.questions, limit=args.limit)
    telemetry = _telemetry(args, config)
    try:
        router = _router(config, telemetry)
        console.print(
            f"Routing {len(questions)} questions, starting at {router.start} (models: "
            f"{', '.join(router.models)}; policy {router.policy!r})"
        )
        progress = _progress(console)
        with progress:
            task = progress.add_task("routing", total=len(questions))

            def advance(row: DemoRow) -> None:
                progress.update(task, advance=1, description=f"routing {row.question.id}")

            async def demo() -> DemoReport:
                try:
                    return await run_demo(
                        router, questions, on_row=advance, guarantee=_demo_guarantee(router)
                    )
                finally:
                    await router.aclose()

            report = asyncio.run(demo())
    finally:
        telemetry.shutdown()
    console.print(_demo_table(report))
    console.print(_demo_summary(report))
    console.print(f"[dim]traces → {_destination(args, config)}[/dim]")
    if router.queue is not None and report.count("pending"):
        console.print(f"[dim]review tickets → {getattr(router.queue, 'path', 'the queue')}[/dim]")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        console.print(f"[dim]report → {args.json}[/dim]")
    return 0


# --- demur eval ------------------------------------------------------------------------------


def _eval_model(name: str, config: RouterConfig) -> Any:
    from demur.adapters.models.catalog import BUILTIN_MODELS
    from demur.config import build_model
    from demur.errors import unknown_name

    if name in config.models:
        return build_model(name, config.models[name])
    if name in BUILTIN_MODELS:
        from demur.adapters.models.llama_cpp import LlamaCppModel

        return LlamaCppModel(name, builtin=name, max_tokens=32)
    raise unknown_name("model", name, [*config.models, *BUILTIN_MODELS])


def cmd_eval(args: argparse.Namespace) -> int:
    from demur.estimators.registry import parse_estimators
    from demur.evaluation.dataset import load_dataset
    from demur.evaluation.report import write_report
    from demur.evaluation.runner import run_eval
    from demur.evaluation.summary import summarize_run, write_summary, write_tables
    from demur.router.sampling import Sampling

    console = _console()
    config = _load(args)
    dataset = load_dataset(args.data, limit=args.limit)
    for problem in dataset.problems:
        console.print(f"[yellow]skipped line {problem.line}: {problem.message}[/yellow]")
    estimators = parse_estimators(args.estimators)
    model = _eval_model(args.model, config) if args.model else None
    judge = _eval_model(args.judge, config) if args.judge else None
    source = args.model or "logged answers"
    out = args.out or Path(".demur") / "eval" / f"{Path(args.data).stem}-{source.replace(' ', '-')}"
    sampling = Sampling(temperature=args.temperature, adaptive=args.adaptive)
    progress = _progress(console)

    async def evaluate() -> Any:
        try:
            return await run_eval(
                dataset,
                out,
                model=model,
                estimators=estimators,
                grader=args.grader,
                judge=judge,
                sampling=sampling,
                resume=not args.no_resume,
                description={"dataset": str(args.data)},
                on_row=lambda row: progress.update(task, advance=1),
            )
        finally:
            for held in (model, judge):
                closer = getattr(held, "aclose", None)
                if closer is not None:
                    await closer()

    with progress:
        task = progress.add_task(f"evaluating {source}", total=len(dataset.items))
        results = asyncio.run(evaluate())
    if results.resumed:
        console.print(f"resumed: {results.resumed} rows were already done in {out}")
    summary = summarize_run(results, calibration=args.calibration)
    write_tables(results)
    write_summary(results, summary)
    report = write_report(results, summary)
    _print_eval_summary(console, summary)
    console.print(f"[dim]results → {out}/results.json, results.csv; report → {report}[/dim]")
    return 0


def _print_eval_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{summary['graded']} graded rows, accuracy {_fmt_conf(summary['accuracy'])}"
    )
    for column in (
        "estimator",
        "scored",
        "AUROC",
        "AURC",
        "ECE raw",
        "ECE cal.",
        "Brier",
        "calls/q",
        "s/q",
    ):
        table.add_column(column)
    for name, entry in summary["estimators"].items():
        raw, cal = entry.get("raw") or {}, entry.get("calibrated") or {}
        table.add_row(
            name,
            str(entry.get("available")),
            _fmt_conf(raw.get("auroc")),
            _fmt_conf(raw.get("aurc")),
            _fmt_conf(raw.get("ece")),
            _fmt_conf(cal.get("ece")),
            _fmt_conf(raw.get("brier")),
            _fmt_conf(entry.get("model_calls_per_question")),
            _fmt_conf(entry.get("seconds_per_question")),
        )
    console.print(table)


# --- demur calibrate -------------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> int:
    from demur.calibration.bundle import fit_bundle
    from demur.errors import ConfigError
    from demur.evaluation.runner import RESULTS, SETTINGS

    results_dir = Path(args.results)
    results_file = results_dir / RESULTS if results_dir.is_dir() else results_dir
    if not results_file.exists():
        raise ConfigError(f"{results_file} does not exist; run `demur eval` first")
    rows = [json.loads(line) for line in results_file.read_text("utf-8").splitlines() if line]
    settings_file = results_file.parent / SETTINGS
    settings = json.loads(settings_file.read_text("utf-8")) if settings_file.exists() else {}
    estimators = [e for e in args.estimators.split(",") if e] if args.estimators else None
    estimators = estimators or settings.get("estimators") or []
    bundle, report = fit_bundle(
        rows,
        estimators,
        combine=args.combine,
        method=args.method,
        alpha=None if args.no_conformal else args.alpha,
        delta=args.delta,
        conformal_share=args.conformal_share,
        model=settings.get("model"),
        source=str(results_file),
    )
    bundle.save(args.out)
    console = _console()
    console.print(
        f"calibrator ({args.method}) fitted on {report['calibrator_rows']} rows for "
        f"{', '.join(estimators)} combined by {args.combine}; "
        f"ECE {bundle.calibrator.metadata.metrics['before']['ece']:.3f} → "  # type: ignore[union-attr]
        f"{bundle.calibrator.metadata.metrics['after']['ece']:.3f} on its own rows"  # type: ignore[union-attr]
    )
    if bundle.conformal is not None:
        c = bundle.conformal
        console.print(
            f"conformal threshold {c.threshold:.3f} from {report['conformal_rows']} held-out "
            f"rows: error among accepted <= {c.alpha:g} with probability >= {1 - c.delta:g}; "
            f"there it accepted {c.accepted}/{c.n} (coverage {c.coverage:.0%}) with "
            f"{c.errors} errors (bound {c.bound:.3f})"
        )
    if report["dropped_rows"]:
        console.print(f"[yellow]{report['dropped_rows']} rows had no score and were left out")
    console.print(
        f"[dim]written to {args.out}; use it with `calibration: {args.out}` and "
        "`policy: {{threshold: conformal}}` in a router config[/dim]"
    )
    return 0


# --- demur index -----------------------------------------------------------------------------

_LISTED = 10  # bad rows and failed chunks printed in full; the rest are counted


def cmd_index(args: argparse.Namespace) -> int:
    from demur.adapters.embeddings import BUILTIN_EMBEDDERS, load_embedder
    from demur.errors import ConfigError
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.indexing import index_paths, source_files

    console = _console()
    names = (
        [name.strip() for name in args.embedders.split(",") if name.strip()]
        if args.embedders is not None
        else list(BUILTIN_EMBEDDERS)
    )
    if not names:
        raise ConfigError("--embedders is empty; name at least one, e.g. --embedders minilm-l6")
    embedders = [load_embedder(name) for name in dict.fromkeys(names)]
    store = ChromaStore(args.store, url=args.url)
    files = source_files(args.paths)
    console.print(
        f"Indexing {len(files)} file(s) into {store.location} with {', '.join(names)}",
        markup=False,
    )
    progress = _progress(console)
    tasks: dict[str, Any] = {}

    def advance(event: IndexProgress) -> None:
        if event.embedder not in tasks:
            tasks[event.embedder] = progress.add_task(
                f"embedding with {event.embedder}", total=event.total
            )
        progress.update(tasks[event.embedder], completed=event.done)

    try:
        with progress:
            report = index_paths(
                files,
                store,
                embedders,
                chunk_size=args.chunk_size,
                overlap=args.overlap,
                batch_size=args.batch_size,
                on_progress=advance,
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: what was indexed is kept; rerun to resume[/yellow]")
        raise
    _print_index_report(console, report, store)
    if report.failed:
        console.print(
            f"[red]{len(report.failed)} chunk(s) failed to embed and were skipped; "
            "fix them and rerun (what was indexed is kept)[/red]"
        )
        return 1
    return 0


def _print_index_report(console: Console, report: IndexReport, store: ChromaStore) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{report.files} file(s), {report.chunks} chunk(s) → {escape(store.location)}"
    )
    for column in ("embedder", "collection", "added", "already there", "failed", "in collection"):
        table.add_column(
            column, justify="left" if column in ("embedder", "collection") else "right"
        )
    for name, added in report.added.items():
        failed = sum(1 for item in report.failed if item.embedder == name)
        table.add_row(
            name,
            store.collection_name(name),
            str(added),
            str(report.skipped.get(name, 0)),
            str(failed),
            str(store.count(name)),
        )
    console.print(table)
    for row in report.bad_rows[:_LISTED]:
        console.print(f"[yellow]skipped {escape(str(row))}[/yellow]")
    for item in report.failed[:_LISTED]:
        failure = f"{item.embedder} {item.id} ({item.source}): {item.error}"
        console.print(f"[red]failed to embed {escape(failure)}[/red]")
    hidden = max(0, len(report.bad_rows) - _LISTED) + max(0, len(report.failed) - _LISTED)
    if hidden:
        console.print(f"[dim]… and {hidden} more[/dim]")


# --- demur serve -----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from demur.errors import ConfigError
    from demur.server.run import serve  # fails early, naming the extra, without starlette
    from demur.server.settings import ServerSettings, read_key_file
    from demur.telemetry import configure_telemetry

    options = {
        "host": args.host,
        "port": args.port,
        "api_keys": read_key_file(args.api_key_file) if args.api_key_file else (),
        "api_key_env": args.api_key_env or None,
        "allow_unauthenticated": args.allow_unauthenticated,
        "max_body_bytes": args.max_body_bytes,
        "rate_limit_rps": args.rate_limit,
        "rate_limit_burst": args.rate_burst,
        "max_in_flight": args.max_in_flight,
        "route_timeout_s": args.route_timeout,
        "shutdown_timeout_s": args.shutdown_timeout,
        "model_name": args.model_name,
        "log_level": args.log_level,
    }
    try:
        settings = ServerSettings(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server settings: {problems}") from None
    settings.check_exposure(settings.resolved_keys())  # before loading any model
    config = _load(args)
    exporter = args.traces or config.tracing.exporter
    path = args.trace_file or config.tracing.path
    telemetry = configure_telemetry(
        exporter, path=path, service_name="demur-server", set_global=False
    )
    try:
        router = _router(config, telemetry)
        serve(router, settings, tracer_provider=telemetry.tracer_provider)
    finally:
        telemetry.shutdown()
    return 0


# --- demur review ----------------------------------------------------------------------------


def cmd_review(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from demur.errors import ConfigError
    from demur.review.run import serve_review  # fails early, naming the extra, without starlette
    from demur.review.settings import ReviewSettings

    try:
        settings = ReviewSettings(
            host=args.host,
            port=args.port,
            tokens_env=args.tokens_env or None,
            tokens_file=args.tokens_file,
            lease_s=args.lease,
            log_level=args.log_level,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid review settings: {problems}") from None
    settings.resolved_tokens()  # before opening the queue: no token, no reviewer
    serve_review(_open_queue(args), settings, owns_queue=True)
    return 0


# --- demur queue -----------------------------------------------------------------------------


def _open_queue(args: argparse.Namespace) -> Any:
    """The review queue named by --dsn, --path, or the config's `queue` section."""
    from demur.errors import ConfigError

    if args.dsn:
        from demur.queue.postgres import PostgresQueue

        return PostgresQueue(args.dsn)
    if args.path:
        from demur.queue.sqlite import SqliteQueue

        if not Path(args.path).exists():
            raise ConfigError(f"there is no review queue at {args.path}; check the path")
        return SqliteQueue(args.path)
    config = _load(args)
    if config.queue is None:
        raise ConfigError(
            "the config has no 'queue' section; add `queue: {path: .demur/queue.db}`, or pass "
            "--path FILE (SQLite) or --dsn DSN (PostgreSQL)"
        )
    return config.queue.build()


def _since(value: str | None) -> Any:
    from datetime import UTC, datetime

    from demur.errors import ConfigError

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since {value!r} is not an ISO date or time, e.g. 2025-01-31 or 2025-01-31T12:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_queue(args: argparse.Namespace) -> int:
    queue = _open_queue(args)
    try:
        if args.action == "export":
            from demur.evaluation.labels import export_resolved

            report = export_resolved(
                queue, args.out, since=_since(args.since), model=args.model, grader=args.grader
            )
            print(
                f"{report.rows} rows from {report.tickets} resolved tickets "
                f"(estimators: {', '.join(report.estimators) or 'none'}) → {report.path}; "
                f"recalibrate with: demur calibrate {report.path} --out calibration.json"
            )
            return 0
        if args.action == "stats":
            stats = queue.stats()
            if args.json:
                print(stats.model_dump_json(indent=2))
                return 0
            counts = ", ".join(f"{n} {status}" for status, n in stats.counts.items())
            print(f"{stats.total} tickets: {counts}")
            if stats.expired_leases:
                print(f"{stats.expired_leases} claims expired (counted as pending)")
            if stats.overdue:
                print(f"{stats.overdue} open tickets are past their deadline")
            if stats.oldest_pending_age_s is not None:
                print(f"oldest pending ticket: {stats.oldest_pending_age_s:.0f}s old")
            if stats.mean_resolve_s is not None:
                print(f"mean time to resolve: {stats.mean_resolve_s:.1f}s")
            return 0
        tickets = queue.tickets(
            status=args.status or None, text=args.text, limit=args.limit, order=args.order
        )
        if args.json:
            for ticket in tickets:
                print(ticket.model_dump_json())
            return 0
        for ticket in tickets:
            question = " ".join(ticket.question.split())
            question = question if len(question) <= 60 else question[:59] + "…"
            print(
                f"{ticket.id}  {ticket.status:<9}  p{ticket.priority:<3}  "
                f"{ticket.created_at:%Y-%m-%d %H:%M}  {question}"
            )
        return 0
    finally:
        queue.close()


# --- demur config ----------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "show":
        print(resources.files("demur").joinpath("default_config.toml").read_text("utf-8"), end="")
        return 0
    from demur.config import load_config

    config = load_config(args.file)
    print(f"{args.file}: valid; models {', '.join(config.models)}; policy {config.policy.kind}")
    return 0


# --- entry point -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demur", description="Confidence-gated routing for LLM and RAG applications."
    )
    parser.add_argument("--version", action="version", version=f"demur {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def routed(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="router config (.yaml or .toml)")
        sub.add_argument(
            "--traces",
            choices=["jsonl", "console", "otlp", "none"],
            help="trace exporter (default: the config's; otlp reads OTEL_EXPORTER_OTLP_*)",
        )
        sub.add_argument("--trace-file", help="JSON-lines trace file (default .demur/traces.jsonl)")

    demo = commands.add_parser("demo", help="route the bundled questions through local models")
    routed(demo)
    demo.add_argument("--limit", type=int, help="route only the first N questions")
    demo.add_argument("--questions", type=Path, help="a JSONL file of your own questions")
    demo.add_argument("--json", help="also write the summary as JSON to this file")
    demo.set_defaults(run=cmd_demo)

    ask = commands.add_parser("ask", help="answer one question and show each step")
    routed(ask)
    ask.add_argument("question")
    ask.add_argument("--context", action="append", help="a passage to answer from (repeatable)")
    ask.add_argument("--json", action="store_true", help="print the verdict as JSON")
    ask.set_defaults(run=cmd_ask)

    evaluate = commands.add_parser(
        "eval", help="score estimators against gold answers (a model's, or logged answers)"
    )
    evaluate.add_argument("data", type=Path, help="JSONL: question, answers[, context, response]")
    evaluate.add_argument("--config", type=Path, help="router config whose models --model names")
    evaluate.add_argument(
        "--model",
        help="a model of the config (weak, strong) or a built-in (smollm2-135m); "
        "omit to score the dataset's logged 'response's",
    )
    evaluate.add_argument(
        "--estimators",
        default="mean_logprob,min_prob,gnll,entropy",
        help="comma-separated, options after colons: agreement:similarity=rougeL:samples=5",
    )
    evaluate.add_argument("--grader", default="auto", help="auto, exact, contains or f1")
    evaluate.add_argument("--judge", help="grade with this model instead of --grader")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    evaluate.add_argument("--adaptive", action="store_true", help="adaptive sampling")
    evaluate.add_argument("--calibration", default="isotonic", help="platt, isotonic, histogram")
    evaluate.add_argument("--limit", type=int, help="only the first N usable rows")
    evaluate.add_argument("--out", type=Path, help="output folder (default .demur/eval/...)")
    evaluate.add_argument("--no-resume", action="store_true", help="start over in --out")
    evaluate.set_defaults(run=cmd_eval, traces="none", trace_file=None)

    calibrate = commands.add_parser(
        "calibrate", help="fit a calibrator and a conformal threshold from eval results"
    )
    calibrate.add_argument("results", type=Path, help="a `demur eval` output folder")
    calibrate.add_argument("--estimators", help="comma-separated (default: all in the run)")
    calibrate.add_argument("--combine", default="mean", help="mean, min, max or first")
    calibrate.add_argument("--method", default="isotonic", help="platt, isotonic, histogram")
    calibrate.add_argument("--alpha", type=float, default=0.1, help="error rate to allow")
    calibrate.add_argument("--delta", type=float, default=0.1, help="chance the bound fails")
    calibrate.add_argument(
        "--conformal-share", type=float, default=0.5, help="share of rows for the threshold"
    )
    calibrate.add_argument("--no-conformal", action="store_true", help="only fit a calibrator")
    calibrate.add_argument("--out", type=Path, default=Path("calibration.json"))
    calibrate.set_defaults(run=cmd_calibrate)

    index = commands.add_parser(
        "index", help="chunk and embed documents into chroma collections for retrieval"
    )
    index.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help=".txt, .md, .jsonl files or folders"
    )
    index.add_argument(
        "--embedders",
        help="comma-separated embedders, one collection each "
        "(default: all built-ins, minilm-l6,e5-small,mpnet-base)",
    )
    index.add_argument(
        "--store", type=Path, default=Path(".demur/chroma"), help="chroma folder (.demur/chroma)"
    )
    index.add_argument("--url", help="a chroma server instead of --store, e.g. http://host:8000")
    index.add_argument("--chunk-size", type=int, default=200, help="words per chunk (200)")
    index.add_argument("--overlap", type=int, default=40, help="words shared by chunks (40)")
    index.add_argument("--batch-size", type=int, default=64, help="chunks per commit (64)")
    index.set_defaults(run=cmd_index)

    server = commands.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP gateway whose answers are the router's verdicts",
        description="Serve /v1/chat/completions (streaming too), /v1/models, /healthz, /readyz "
        "and /metrics. Clients authenticate with 'Authorization: Bearer KEY'; keys come from "
        "--api-key-env and --api-key-file. Needs pip install 'demur[server]'.",
    )
    routed(server)
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    server.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    server.add_argument(
        "--api-key-env",
        default="DEMUR_API_KEYS",
        help="environment variable with the accepted keys, comma-separated (DEMUR_API_KEYS)",
    )
    server.add_argument("--api-key-file", type=Path, help="a file of accepted keys, one a line")
    server.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve without keys on a non-loopback address (only behind an authenticating proxy)",
    )
    server.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest request body (1 MiB)"
    )
    server.add_argument("--rate-limit", type=float, help="requests per second per key (no limit)")
    server.add_argument("--rate-burst", type=int, help="burst size per key (one second's worth)")
    server.add_argument("--max-in-flight", type=int, help="routes at once; more get 503")
    server.add_argument(
        "--route-timeout", type=float, help="seconds per route (the budget's deadline + 5)"
    )
    server.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to drain on SIGTERM (30)"
    )
    server.add_argument("--model-name", default="demur", help="model id listed in /v1/models")
    server.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    server.set_defaults(run=cmd_serve)

    review = commands.add_parser(
        "review",
        help="a web app where reviewers claim and resolve the review queue's tickets",
        description="Serve the reviewer web app: open tickets by priority and deadline, each "
        "with its question, context and scored candidates; claim, approve, edit, answer or "
        "reject. Reviewers sign in with a token; tokens come from --tokens-env and "
        "--tokens-file as REVIEWER:TOKEN entries. Needs pip install 'demur[server]'.",
    )
    review.add_argument("--config", type=Path, help="router config whose `queue` to open")
    where = review.add_mutually_exclusive_group()
    where.add_argument(
        "--queue-path", dest="path", help="an SQLite queue file (instead of the config's)"
    )
    where.add_argument("--dsn", help="a PostgreSQL queue, e.g. postgresql://demur@db/demur")
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    review.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    review.add_argument(
        "--tokens-env",
        default="DEMUR_REVIEWER_TOKENS",
        help="environment variable with REVIEWER:TOKEN entries, comma-separated "
        "(DEMUR_REVIEWER_TOKENS)",
    )
    review.add_argument(
        "--tokens-file", type=Path, help="a file of REVIEWER:TOKEN entries, one a line"
    )
    review.add_argument(
        "--lease", type=float, help="seconds a claim lasts (the queue's default, 300)"
    )
    review.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    review.set_defaults(run=cmd_review)

    queue = commands.add_parser(
        "queue", help="the human review queue: list or count tickets, export human verdicts"
    )
    queue_actions = queue.add_subparsers(dest="action", required=True)
    export = queue_actions.add_parser(
        "export", help="write resolved tickets as labelled rows for `demur calibrate`"
    )
    listing = queue_actions.add_parser("list", help="list tickets (waiting ones first)")
    stats = queue_actions.add_parser("stats", help="count tickets by state; time to resolve")
    for sub in (export, listing, stats):
        sub.add_argument("--config", type=Path, help="router config whose `queue` to open")
        sub.add_argument("--path", help="an SQLite queue file (instead of the config's)")
        sub.add_argument("--dsn", help="a PostgreSQL queue, e.g. postgresql://demur@db/demur")
    export.add_argument(
        "--out", type=Path, default=Path(".demur/queue-export"), help="output folder"
    )
    export.add_argument("--since", help="only tickets resolved since this ISO date or time")
    export.add_argument("--model", help="only this model's answers (a calibrator is per model)")
    export.add_argument(
        "--grader",
        default="auto",
        help="how answers are judged against a human's: auto, exact, contains, f1",
    )
    listing.add_argument(
        "--status", action="append", choices=["pending", "claimed", "resolved", "cancelled"]
    )
    listing.add_argument("--text", help="only tickets whose question or answer contains this")
    listing.add_argument("--order", default="queue", choices=["queue", "newest", "oldest"])
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    listing.add_argument("--json", action="store_true", help="one JSON ticket per line")
    stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    queue.set_defaults(run=cmd_queue)

    config = commands.add_parser("config", help="show the default config or check a file")
    config_actions = config.add_subparsers(dest="action", required=True)
    config_actions.add_parser("show", help="print the embedded default config")
    check = config_actions.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    config.set_defaults(run=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except DemurError as exc:
        print(f"demur: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demur: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

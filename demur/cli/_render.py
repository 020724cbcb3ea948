"""What the commands print: Rich tables and one-line summaries of verdicts, demo runs, eval
runs and index runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demur.errors import MissingDependencyError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from demur.demo.runner import DemoReport
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.indexing import IndexReport
    from demur.types import Step, Verdict

LISTED = 10  # bad rows and failed chunks printed in full; the rest are counted


def make_console(stderr: bool = False) -> Console:
    try:
        from rich.console import Console
    except ImportError:
        raise MissingDependencyError("rich", "cli", "The demur command") from None
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # pipes and CI logs: do not squeeze tables to 80 columns
        console = Console(stderr=stderr, highlight=False, width=max(console.width, 140))
    return console


def make_progress(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def fmt_conf(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def action_label(verdict: Verdict) -> str:
    return {"accept": "answer", "ask_human": "human", "abstain": "abstain"}[verdict.action]


def print_steps(console: Console, verdict: Verdict) -> None:
    from rich.table import Table

    table = Table(title="Steps", show_lines=True)
    for column in ("#", "model", "answer", "scores", "confidence", "decision", "latency"):
        table.add_column(column)
    for step in verdict.steps:
        scores = "\n".join(
            f"{s.estimator}: {fmt_conf(s.confidence)}" if s.ok else f"{s.estimator}: {s.status}"
            for s in step.scores
        )
        answer = step.candidate.text if step.candidate else f"[red]{step.error}[/red]"
        answer += "".join(f"\n[dim]{line}[/dim]" for line in grounding_lines(step))
        decision = step.decision
        decided = f"{decision.action.kind}\n[dim]{decision.reason}[/dim]" if decision else ""
        table.add_row(
            str(step.index),
            step.model,
            answer,
            scores,
            fmt_conf(step.confidence),
            decided,
            f"{step.latency_s:.2f}s",
        )
    console.print(table)


def grounding_lines(step: Step) -> list[str]:
    """What was retrieved for the step, and the answers it compared, in a few short lines."""
    lines = []
    for branch in step.branches or ():
        text = branch.candidate.text if branch.candidate else branch.error_type
        chosen = " (kept)" if branch.name == step.branch else ""
        lines.append(f"{branch.name}: {text} [{fmt_conf(branch.confidence)}]{chosen}")
    retrieval = step.retrieval
    if retrieval is not None:
        if retrieval.error is not None:
            lines.append(f"retrieval failed: {retrieval.error}")
        else:
            top = retrieval.documents[0].score if retrieval.documents else None
            lines.append(
                f"{len(retrieval.documents)} passage(s) from {retrieval.retriever}, "
                f"top similarity {fmt_conf(top)}"
            )
        if retrieval.note:
            lines.append(retrieval.note)
    return lines


def verdict_summary(verdict: Verdict) -> str:
    if verdict.status == "answered":
        return (
            f"[bold green]Answer[/bold green] ({verdict.model}, confidence "
            f"{fmt_conf(verdict.confidence)}): {verdict.answer}"
        )
    if verdict.status == "pending":
        return f"[bold yellow]Sent to a person[/bold yellow]: ticket {verdict.ticket_id}"
    return f"[bold red]Abstained[/bold red]: {verdict.message}"


def demo_table(report: DemoReport) -> Table:
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
            fmt_conf(verdict.confidence),
            action_label(verdict) + (" ↑" if verdict.escalated else ""),
            verdict.model or "—",
            mark,
        )
    return table


def demo_summary(report: DemoReport) -> Table:
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
    largest = report.models[-1]
    gain = report.gain_over(largest)
    table.add_row(
        "accuracy of answered",
        "—"
        if accuracy is None or gain is None
        else f"{accuracy:.0%} (routed by demur; {gain * 100:+.0f} points over always {largest})",
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


def print_eval_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{summary['graded']} graded rows, accuracy {fmt_conf(summary['accuracy'])}"
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
            fmt_conf(raw.get("auroc")),
            fmt_conf(raw.get("aurc")),
            fmt_conf(raw.get("ece")),
            fmt_conf(cal.get("ece")),
            fmt_conf(raw.get("brier")),
            fmt_conf(entry.get("model_calls_per_question")),
            fmt_conf(entry.get("seconds_per_question")),
        )
    console.print(table)


def print_index_report(console: Console, report: IndexReport, store: ChromaStore) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{report.files} file(s), {report.chunks} chunk(s) → {escape(store.location)}",
        caption="files: added, updated, removed, unchanged; "
        "chunks: embedded, deleted, failed, in collection",
    )
    columns = ("embedder", "collection", "added", "updated", "removed", "unchanged")
    for column in (*columns, "embedded", "deleted", "failed", "in collection"):
        table.add_column(
            column, justify="left" if column in ("embedder", "collection") else "right"
        )
    for name, added in report.added.items():
        failed = sum(1 for item in report.failed if item.embedder == name)
        files = report.documents[name]
        table.add_row(
            name,
            store.collection_name(name),
            *(str(n) for n in (files.added, files.updated, files.removed, files.unchanged)),
            str(added),
            str(report.deleted.get(name, 0)),
            str(failed),
            str(store.count(name)),
        )
    console.print(table)
    for row in report.bad_rows[:LISTED]:
        console.print(f"[yellow]skipped {escape(str(row))}[/yellow]")
    for item in report.failed[:LISTED]:
        failure = f"{item.embedder} {item.id} ({item.source}): {item.error}"
        console.print(f"[red]failed to embed {escape(failure)}[/red]")
    hidden = max(0, len(report.bad_rows) - LISTED) + max(0, len(report.failed) - LISTED)
    if hidden:
        console.print(f"[dim]… and {hidden} more[/dim]")

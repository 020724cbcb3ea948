"""Review-queue throughput and latency: enqueue, claim and resolve, SQLite and PostgreSQL,
with 1 and 8 worker processes.

Each run starts from an empty queue and has three phases, separated by a barrier so that
they do not overlap: every worker enqueues its share of the tickets, then claims until the
queue is empty, then resolves what it claimed. Throughput is operations per second of wall
time over a phase (all workers together); latencies are per call, pooled across workers.
SQLite writes a file with WAL and synchronous=FULL (an fsync per commit); PostgreSQL is a
throwaway local server with fsync on (or `--dsn` for an existing one).

    python -m benchmarks.bench_queue [--tickets 2000] [--workers 1,8] [--json out.json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.common import report
from demur import Score
from demur.queue import CandidateAnswer, Resolution, SqliteQueue, TicketRequest


def _open(kind: str, location: str) -> Any:
    if kind == "sqlite":
        return SqliteQueue(location, lease_s=600)
    from demur.queue import PostgresQueue  # psycopg is an optional extra

    return PostgresQueue(location, lease_s=600)


def _request(worker: int, i: int) -> TicketRequest:
    """A realistic ticket: a question, a passage, two scored candidates (about 1.5 KB)."""
    return TicketRequest(
        question=f"Worker {worker}, question {i}: who wrote the novel described here?",
        context=("A passage of about a paragraph that the answer was drawn from. " * 12,),
        candidates=tuple(
            CandidateAnswer(
                model=model,
                text=f"{model} thinks it was Jane Austen ({i})",
                confidence=0.3,
                scores={"mean_logprob": 0.3, "min_prob": 0.2},
                details=(
                    Score(estimator="mean_logprob", value=-1.2, confidence=0.3),
                    Score(estimator="min_prob", value=0.2, confidence=0.2),
                ),
            )
            for model in ("weak", "strong")
        ),
        reason="confidence 0.30 < threshold 0.60",
        trace_id=f"{worker:016x}{i:016x}",
        span_id=f"{i:016x}",
        priority=i % 3,
        idempotency_key=f"w{worker}-{i}",
    )


def _worker(kind: str, location: str, worker: int, count: int, barrier: Any) -> dict[str, Any]:
    queue = _open(kind, location)
    requests = [_request(worker, i) for i in range(count)]
    timings: dict[str, list[float]] = {"enqueue": [], "claim": [], "resolve": []}
    barrier.wait()
    for request in requests:
        started = time.perf_counter()
        queue.enqueue(request)
        timings["enqueue"].append(time.perf_counter() - started)
    barrier.wait()
    claims = []
    while True:
        started = time.perf_counter()
        claim = queue.claim(f"w{worker}")
        elapsed = time.perf_counter() - started
        if claim is None:
            break
        timings["claim"].append(elapsed)
        claims.append(claim)
    barrier.wait()
    for claim in claims:
        started = time.perf_counter()
        queue.resolve(claim.ticket.id, claim.token, Resolution.approve(1), note="ok")
        timings["resolve"].append(time.perf_counter() - started)
    barrier.wait()
    queue.close()
    return timings


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(kind: str, location: str, workers: int, tickets: int) -> dict[str, Any]:
    _open(kind, location).close()  # create the schema before the clock starts
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(workers + 1)
    share = [tickets // workers + (1 if w < tickets % workers else 0) for w in range(workers)]
    phases: dict[str, float] = {}
    with context.Pool(workers) as pool:
        pending = pool.starmap_async(
            _worker, [(kind, location, w, share[w], barrier) for w in range(workers)]
        )
        barrier.wait()  # all workers connected and ready
        for phase in ("enqueue", "claim", "resolve"):
            started = time.perf_counter()
            barrier.wait()
            phases[phase] = time.perf_counter() - started
        results = pending.get(timeout=1800)
    stats = _open(kind, location).stats()
    assert stats.counts["resolved"] == tickets, f"lost tickets: {stats.counts}"
    out: dict[str, Any] = {"backend": kind, "workers": workers, "tickets": tickets}
    for phase, wall in phases.items():
        latencies = [t for r in results for t in r[phase]]
        out[phase] = {
            "ops": len(latencies),
            "per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 3),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        }
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | workers | enqueue/s | p50 | p99 | claim/s | p50 | p99 "
        "| resolve/s | p50 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["backend"], str(r["workers"])]
        for phase in ("enqueue", "claim", "resolve"):
            p = r[phase]
            cells += [f"{p['per_s']:.0f}", f"{p['p50_ms']:.2f} ms", f"{p['p99_ms']:.2f} ms"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=2000, help="tickets per run (2000)")
    parser.add_argument("--workers", default="1,8", help="worker process counts (1,8)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: a throwaway server)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-queue-")))
        dsn = args.dsn or os.environ.get("DEMUR_TEST_POSTGRES_DSN")
        if "postgres" in backends and dsn is None:
            from tests.queue.pgserver import PgUnavailable, throwaway_postgres

            try:
                dsn = stack.enter_context(throwaway_postgres(fsync=True))
            except PgUnavailable as exc:
                notes.append(f"PostgreSQL skipped: {exc}")
                backends.remove("postgres")
        for kind in backends:
            for workers in counts:
                if kind == "sqlite":
                    location = str(folder / f"queue-{workers}.db")
                else:
                    import psycopg
                    from psycopg.conninfo import make_conninfo

                    assert dsn is not None
                    schema = f"bench_{workers}_{os.getpid()}"
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                        conn.execute(f"CREATE SCHEMA {schema}")
                    location = make_conninfo(dsn, options=f"-c search_path={schema}")
                print(f"== {kind}, {workers} worker(s), {args.tickets} tickets", flush=True)
                rows.append(run(kind, location, workers, args.tickets))
    print(_table(rows))
    report(
        {
            "benchmark": "queue",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "runs": rows,
            "notes": notes,
        },
        args.json,
    )


if __name__ == "__main__":
    main()

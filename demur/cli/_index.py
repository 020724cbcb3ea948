"""`demur index PATH...`: chunk and embed documents into chroma collections, one per embedder,
keeping each in step with the files: changed files replace their chunks, `--prune` deletes the
chunks of files that are gone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _progress, _render

if TYPE_CHECKING:
    from rich.progress import TaskID

    from demur.cli._options import Commands
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.indexing import IndexProgress


def add_parser(commands: Commands) -> None:
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
    index.add_argument(
        "--prune",
        action="store_true",
        help="delete what was indexed from files under PATH that are no longer there",
    )
    index.set_defaults(run=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    from demur.adapters.embeddings import BUILTIN_EMBEDDERS
    from demur.embedders import shared_embedder
    from demur.errors import ConfigError
    from demur.retrieval.chroma import ChromaStore
    from demur.retrieval.indexing import index_paths, source_files

    console = _render.make_console()
    names = (
        [name.strip() for name in args.embedders.split(",") if name.strip()]
        if args.embedders is not None
        else list(BUILTIN_EMBEDDERS)
    )
    if not names:
        raise ConfigError("--embedders is empty; name at least one, e.g. --embedders minilm-l6")
    embedders = [shared_embedder(name) for name in dict.fromkeys(names)]
    store = ChromaStore(args.store, url=args.url)
    files = source_files(args.paths)
    console.print(
        f"Indexing {len(files)} file(s) into {store.location} with {', '.join(names)}",
        markup=False,
    )
    progress = _progress.make_progress(console)
    tasks: dict[str, TaskID] = {}
    last: dict[str, IndexProgress] = {}

    def advance(event: IndexProgress) -> None:
        last[event.embedder] = event
        if event.embedder not in tasks:
            tasks[event.embedder] = progress.add_task(
                f"embedding with {event.embedder}", total=event.total, unit="chunks"
            )
        progress.update(tasks[event.embedder], completed=event.done)

    try:
        with progress:
            report = index_paths(
                args.paths,
                store,
                embedders,
                chunk_size=args.chunk_size,
                overlap=args.overlap,
                batch_size=args.batch_size,
                prune=args.prune,
                on_progress=advance,
            )
    except KeyboardInterrupt:
        console.print(_interrupted(last, store), markup=False)
        raise
    _render.print_index_report(console, report, store)
    missing = max((counts.missing for counts in report.documents.values()), default=0)
    if missing:
        console.print(
            f"[yellow]{missing} file(s) indexed from under these paths before are gone; their "
            "passages are still retrieved. Rerun with --prune to delete them.[/yellow]"
        )
    if report.failed:
        console.print(
            f"[red]{len(report.failed)} chunk(s) failed to embed and were skipped; "
            "fix them and rerun (what was indexed is kept)[/red]"
        )
        return 1
    return 0


def _interrupted(last: dict[str, IndexProgress], store: ChromaStore) -> str:
    """What an interrupted run saved, and how to go on."""
    saved = "; ".join(
        f"{event.done} of {event.total} chunk(s) to embed with {event.embedder}"
        for event in last.values()
    )
    said = (
        f"{saved} were written to {store.location} and are kept"
        if saved
        else "no chunk was embedded yet"
    )
    return (
        f"interrupted: {said}. Rerun the same command to resume: what is stored is not "
        "embedded again, and replaced or removed passages are deleted once a run completes."
    )

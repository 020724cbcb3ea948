"""`demur index PATH...`: chunk and embed documents into chroma collections, one per embedder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _render

if TYPE_CHECKING:
    from rich.progress import TaskID

    from demur.cli._options import Commands
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
    progress = _render.make_progress(console)
    tasks: dict[str, TaskID] = {}

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
    _render.print_index_report(console, report, store)
    if report.failed:
        console.print(
            f"[red]{len(report.failed)} chunk(s) failed to embed and were skipped; "
            "fix them and rerun (what was indexed is kept)[/red]"
        )
        return 1
    return 0

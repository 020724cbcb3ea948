"""What a command's flags and the router config decide together: the config, the trace exporter,
the router, the review queue, and server or review settings. A flag, when given, wins over the
config, and each such rule lives here once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel

    from demur.config import RouterConfig
    from demur.queue.base import ReviewQueue
    from demur.router.router import Router
    from demur.telemetry import ExporterName, Telemetry

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What `add_subparsers()` returns: each command module adds its parser to it."""

SettingsT = TypeVar("SettingsT", bound="BaseModel")


def add_router_options(sub: argparse.ArgumentParser) -> None:
    """--config, --traces, --trace-file, --allow-empty-store: for commands that build a router."""
    sub.add_argument("--config", type=Path, help="router config (.yaml or .toml)")
    sub.add_argument(
        "--traces",
        choices=["jsonl", "console", "otlp", "none"],
        help="trace exporter (default: the config's; otlp reads OTEL_EXPORTER_OTLP_*)",
    )
    sub.add_argument("--trace-file", help="JSON-lines trace file (default .demur/traces.jsonl)")
    sub.add_argument(
        "--allow-empty-store",
        action="store_true",
        help="start even if the retrieval store or a collection is missing or empty "
        "(answers closed-book until it is indexed)",
    )


class _Renamed(argparse.Action):
    """An option's old spelling: hidden from --help, still accepted, with a warning on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"demur: warning: {option_string} is deprecated; use {self.new} (same meaning)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_queue_options(sub: argparse.ArgumentParser) -> None:
    """--config, --queue-path and --dsn: for the commands that open the review queue.

    `--queue-path` is the one name for an SQLite queue file in every command; `--path`, its
    old spelling in `demur queue`, still works and says so.
    """
    sub.add_argument("--config", type=Path, help="router config whose `queue` to open")
    where = sub.add_mutually_exclusive_group()
    where.add_argument(
        "--queue-path", metavar="FILE", help="an SQLite queue file (instead of the config's)"
    )
    where.add_argument("--path", dest="queue_path", action=_Renamed, new="--queue-path")
    where.add_argument(
        "--dsn", metavar="DSN", help="a PostgreSQL queue, e.g. postgresql://demur@db/demur"
    )


def router_config(args: argparse.Namespace) -> RouterConfig:
    """The config named by --config, or the embedded defaults; --allow-empty-store applied."""
    from demur.config import default_config, load_config

    config = default_config() if args.config is None else load_config(args.config)
    if getattr(args, "allow_empty_store", False) and config.retrieval is not None:
        retrieval = config.retrieval.model_copy(update={"allow_empty_store": True})
        config = config.model_copy(update={"retrieval": retrieval})
    return config


@dataclass(frozen=True)
class Traces:
    """Where traces go: --traces and --trace-file over the config's `tracing` section."""

    exporter: ExporterName
    path: str

    @classmethod
    def resolve(cls, args: argparse.Namespace, config: RouterConfig) -> Traces:
        return cls(
            exporter=args.traces or config.tracing.exporter,
            path=str(args.trace_file or config.tracing.path),
        )

    @property
    def destination(self) -> str:
        """The trace file for jsonl, else the exporter's name: for "traces → ..." lines."""
        return self.path if self.exporter == "jsonl" else self.exporter


def open_telemetry(
    args: argparse.Namespace, config: RouterConfig, *, default_service_name: str = "demur-cli"
) -> Telemetry:
    from demur.telemetry import configure_telemetry

    traces = Traces.resolve(args, config)
    # Providers go to the router explicitly; the global ones stay the host's business.
    return configure_telemetry(
        traces.exporter,
        path=traces.path,
        default_service_name=default_service_name,
        set_global=False,
    )


def build_router(config: RouterConfig, telemetry: Telemetry) -> Router:
    from demur.config import build_router

    return build_router(config, **telemetry.providers)


def open_queue(args: argparse.Namespace) -> ReviewQueue:
    """The review queue named by --dsn, --queue-path, or the config's `queue` section."""
    from demur.errors import ConfigError

    if args.dsn:
        from demur.queue.postgres import PostgresQueue

        return PostgresQueue(args.dsn)
    if args.queue_path:
        from demur.queue.sqlite import SqliteQueue

        if not Path(args.queue_path).exists():
            raise ConfigError(f"there is no review queue at {args.queue_path}; check --queue-path")
        return SqliteQueue(args.queue_path)
    config = router_config(args)
    if config.queue is None:
        raise ConfigError(
            "the config has no 'queue' section; add `queue: {path: .demur/queue.db}`, or pass "
            "--queue-path FILE (SQLite) or --dsn DSN (PostgreSQL)"
        )
    return config.queue.build()


def settings(cls: type[SettingsT], what: str, **options: Any) -> SettingsT:
    """`cls(**options)`, a ValidationError explained like a config error; secrets not shown."""
    from pydantic import ValidationError

    from demur.config.load import explain_validation

    try:
        return cls(**options)
    except ValidationError as exc:
        secret = [name for name, field in cls.model_fields.items() if not field.repr]
        raise explain_validation(exc, what=what, secret=secret, schema=cls) from None


def parse_since(value: str | None) -> datetime | None:
    """`--since`: an ISO date or time; one without a zone is read as UTC."""
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

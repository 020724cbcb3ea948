"""`RouteLog`: an append-only JSON-lines log of routes and their later outcomes.

One line per record, written whole and flushed before `record` returns, so a crash loses at
most the line being written (readers skip a cut-off line). Safe to share between threads; one
process should own a log, since rotation renames its file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from demur.errors import ConfigError
from demur.routelog.files import log_files, rotated_files, rotated_name
from demur.routelog.records import (
    SOURCES,
    OutcomeSource,
    Redactor,
    hash_text,
    outcome_record,
    route_record,
)
from demur.types import Query, Verdict

logger = logging.getLogger("demur.routelog")


def _day(time: str) -> str:
    return time[:10]  # the records' times are ISO 8601 in UTC: YYYY-MM-DD…


class RouteLog:
    """Routes as training data: each route's query, steps, scores and verdict, and outcomes.

    Text is kept as a hash unless `capture_content` is True; then it passes through `redact`
    first. Retention: the active file rotates to a dated file each day (`rotate_daily`) and
    after `rotate_records` records; rotated files older than `max_age_days` are deleted, and
    the oldest go while the log holds more than `max_records` (the check runs at each rotation
    and on `prune()`).

        log = RouteLog(".demur/routes.jsonl", max_age_days=30)
        route_id = log.record(query, verdict)
        log.record_outcome(route_id, correct=False, source="spot_check")
    """

    def __init__(
        self,
        path: str | Path,
        *,
        capture_content: bool = False,
        redact: Redactor | None = None,
        capture_logprobs: bool = True,
        max_age_days: float | None = None,
        max_records: int | None = None,
        rotate_daily: bool = True,
        rotate_records: int | None = None,
        fsync: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if max_age_days is not None and max_age_days <= 0:
            raise ConfigError(f"max_age_days must be > 0 (or None to keep all), got {max_age_days}")
        if max_records is not None and max_records < 1:
            raise ConfigError(f"max_records must be >= 1 (or None to keep all), got {max_records}")
        if rotate_records is None and max_records is not None:
            rotate_records = max(1, max_records // 10)  # retention deletes whole files
        if rotate_records is not None and rotate_records < 1:
            raise ConfigError(f"rotate_records must be >= 1, got {rotate_records}")
        self.path = Path(path)
        self.capture_content = capture_content
        self.redact: Redactor = redact or (lambda text: text)
        self.capture_logprobs = capture_logprobs
        self.max_age_days = max_age_days
        self.max_records = max_records
        self.rotate_daily = rotate_daily
        self.rotate_records = rotate_records
        self.fsync = fsync
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._records = 0  # in the active file
        self._day: str | None = None  # of the active file's first record
        self._counts: dict[Path, int] = {}  # rotated files never change: count them once
        self._pruned = False  # retention runs once when the log is first opened

    # --- writing -----------------------------------------------------------------------------

    def _text(self, text: str) -> str:
        return self.redact(text) if self.capture_content else hash_text(text)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")

    def record(self, query: Query | str, verdict: Verdict, *, route_id: str | None = None) -> str:
        """Append one route; returns its id, which `record_outcome` takes."""
        route_id = route_id or uuid.uuid4().hex
        time = self._now()
        record = route_record(
            route_id,
            time,
            Query.coerce(query),
            verdict,
            text=self._text,
            capture_content=self.capture_content,
            capture_logprobs=self.capture_logprobs,
        )
        self._append(record, time)
        return route_id

    def record_outcome(
        self,
        route_id: str,
        correct: bool,
        *,
        source: OutcomeSource = "human",
        step: int | None = None,
    ) -> None:
        """Append a later judgement of a route's answer: a reviewer's, or a spot check's.

        `route_id` is what `record` returned, or the route's trace id, query id or ticket id.
        `step` grades that step's answer instead of the one the route returned (or, for a
        route without an answer, its last step's).
        """
        if source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        if not isinstance(correct, bool):
            raise ConfigError(f"correct must be True or False, got {correct!r}")
        time = self._now()
        self._append(outcome_record(route_id, time, correct, source, step), time)

    def _append(self, record: dict[str, Any], time: str) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            sink = self._open()
            if self._due(time):
                self._rotate()
                sink = self._open()
            sink.write(line)
            sink.flush()
            if self.fsync:
                os.fsync(sink.fileno())
            self._records += 1
            if self._day is None:
                self._day = _day(time)

    def _due(self, time: str) -> bool:
        if not self._records:
            return False
        if self.rotate_daily and self._day is not None and _day(time) != self._day:
            return True
        return self.rotate_records is not None and self._records >= self.rotate_records

    def _open(self) -> IO[str]:
        if self._file is not None:
            return self._file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records, self._day = 0, None
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("rb") as existing:
                first = existing.readline()
                self._records = 1 + sum(1 for _ in existing)
                existing.seek(-1, os.SEEK_END)
                cut_off = existing.read(1) != b"\n"
            try:
                self._day = _day(str(json.loads(first)["time"]))
            except (ValueError, KeyError, TypeError):
                self._day = (
                    datetime.fromtimestamp(self.path.stat().st_mtime, UTC).date().isoformat()
                )
        else:
            cut_off = False
        self._file = self.path.open("a", encoding="utf-8")
        if cut_off:  # a crash cut the last line short: keep the next record on its own line
            self._file.write("\n")
            self._file.flush()
        if not self._pruned:
            self._pruned = True
            self._prune()
        return self._file

    # --- rotation and retention -------------------------------------------------------------

    def rotate(self) -> Path | None:
        """Move the active file's records to a dated file now; returns it (None when empty)."""
        with self._lock:
            self._open()
            return self._rotate() if self._records else None

    def _rotate(self) -> Path:
        assert self._file is not None
        self._file.close()
        self._file = None
        target = rotated_name(self.path, self._day or _day(self._now()))
        self.path.replace(target)
        self._counts[target] = self._records
        self._records, self._day = 0, None
        self._prune()
        return target

    def prune(self) -> list[Path]:
        """Delete the rotated files that retention no longer keeps; returns them."""
        with self._lock:
            return self._prune()

    def _prune(self) -> list[Path]:
        rotated = rotated_files(self.path)
        removed: list[Path] = []
        if self.max_age_days is not None:
            cutoff = self._clock().timestamp() - self.max_age_days * 86400
            removed += [p for p in rotated if p.stat().st_mtime < cutoff]
        if self.max_records is not None:
            kept = [p for p in rotated if p not in removed]
            total = self._records + sum(self._count(p) for p in kept)
            while kept and total > self.max_records:
                oldest = kept.pop(0)
                total -= self._count(oldest)
                removed.append(oldest)
        for path in removed:
            path.unlink(missing_ok=True)
            self._counts.pop(path, None)
            logger.info("route log: deleted %s (retention)", path)
        return removed

    def _count(self, path: Path) -> int:
        if path not in self._counts:
            with path.open("rb") as lines:
                self._counts[path] = sum(1 for line in lines if line.strip())
        return self._counts[path]

    def files(self) -> list[Path]:
        """The log's files, oldest records first."""
        return log_files(self.path)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the active file (the next record opens it again)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RouteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RouteLog({str(self.path)!r}, capture_content={self.capture_content})"


__all__ = ["RouteLog"]

"""Progress for long commands: a live bar on a terminal, plain lines in a pipe or a log.

rich's live bar draws nothing when the output is not a terminal, so `demur index` under
nohup or in CI would print nothing for minutes; `LineProgress` prints a line instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

EVERY_S = 30.0
"""Seconds between two lines of one task, at most, while it advances."""


def make_progress(console: Console, *, every_s: float = EVERY_S) -> Progress | LineProgress:
    """A rich progress bar on a terminal; `LineProgress` otherwise."""
    if console.is_terminal:
        from demur.cli import _render

        return _render.make_progress(console)
    return LineProgress(console, every_s=every_s)


@dataclass
class _Task:
    description: str
    total: float | None
    unit: str
    completed: float = 0.0
    started: float = 0.0
    printed_at: float = 0.0
    printed_tenth: int = -1


class LineProgress:
    """Progress as plain lines: when a task starts, each tenth of the way, at most `every_s`
    seconds apart while it advances, and when it ends.

    It takes the calls of rich's `Progress` that the commands make (`add_task`, `update`, use
    as a context manager), e.g. "embedding with minilm-l6: 120/600 chunks (20%), 35s".
    """

    def __init__(
        self,
        console: Console,
        *,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.every_s = every_s
        self.clock = clock
        self._tasks: list[_Task] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100.0, **fields: Any) -> TaskID:
        """Start a task; `unit` (a field, e.g. "chunks") follows the counts."""
        from rich.progress import TaskID

        now = self.clock()
        task = _Task(description, total, str(fields.get("unit", "")), started=now)
        self._tasks.append(task)
        self._print(task, now)
        return TaskID(len(self._tasks) - 1)

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        **fields: Any,
    ) -> None:
        """Move a task on; prints a line when it is due."""
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        now = self.clock()
        finished = task.total is not None and task.completed >= task.total
        if (
            finished
            or self._tenth(task) > task.printed_tenth
            or now - task.printed_at >= self.every_s
        ):
            self._print(task, now)

    def _tenth(self, task: _Task) -> int:
        if not task.total:
            return 10
        return int(10 * min(task.completed, task.total) / task.total)

    def _print(self, task: _Task, now: float) -> None:
        tenth = self._tenth(task)
        if task.printed_tenth == 10 and tenth == 10:
            return  # the end was said already
        counts = f"{task.completed:g}" + (f"/{task.total:g}" if task.total is not None else "")
        unit = f" {task.unit}" if task.unit else ""
        share = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        elapsed = _duration(now - task.started)
        self.console.print(
            f"{task.description}: {counts}{unit}{share}, {elapsed}", markup=False, highlight=False
        )
        task.printed_at, task.printed_tenth = now, tenth


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"

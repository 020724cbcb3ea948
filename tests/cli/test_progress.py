"""Progress without a terminal: plain lines at each tenth and every so many seconds, and
`demur eval` saying what an interrupted run kept."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

import demur.evaluation.runner
from demur.cli import main
from demur.cli._progress import LineProgress, make_progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(console: Console) -> list[str]:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue().splitlines()


def test_lines_come_at_each_tenth_and_every_so_many_seconds() -> None:
    console = Console(file=io.StringIO(), width=200)
    clock = Clock()
    progress = LineProgress(console, every_s=30, clock=clock)
    with progress:
        task = progress.add_task("embedding with toy", total=600, unit="chunks")
        for done, now in ((30, 10.0), (50, 20.0), (55, 41.0), (59, 50.0), (120, 55.0)):
            clock.now = now
            progress.update(task, completed=done)
        clock.now = 3725.0
        progress.update(task, completed=600)
        progress.update(task, completed=600)
    assert _lines(console) == [
        "embedding with toy: 0/600 chunks (0%), 0s",
        "embedding with toy: 55/600 chunks (9%), 41s",  # 30 s after the last line
        "embedding with toy: 120/600 chunks (20%), 55s",  # a tenth further
        "embedding with toy: 600/600 chunks (100%), 1h02m",  # the end, said once
    ]


def test_an_empty_task_is_said_once() -> None:
    console = Console(file=io.StringIO(), width=200)
    progress = LineProgress(console)
    task = progress.add_task("embedding with toy", total=0, unit="chunks")
    progress.update(task, completed=0)
    assert _lines(console) == ["embedding with toy: 0/0 chunks, 0s"]


def test_a_terminal_gets_the_live_bar_and_a_pipe_the_lines() -> None:
    assert isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert isinstance(make_progress(Console(file=io.StringIO())), LineProgress)


def _logged(path: Path, n: int) -> Path:
    rows = [
        {"id": f"q{i}", "question": f"Q{i}?", "answers": ["Paris"],
         "response": ["Paris", "Lyon"][i % 2], "logprobs": [[-0.1], [-1.5]][i % 2]}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_demur_eval_prints_progress_lines_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _logged(tmp_path / "d.jsonl", 4)
    argv = ["eval", str(data), "--estimators", "mean_logprob", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    lines = [
        line.split(",")[0]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("evaluating logged answers: ")
    ]
    assert lines == [f"evaluating logged answers: {n}/4 rows ({25 * n}%)" for n in range(5)]


def test_an_interrupted_demur_eval_says_what_was_saved_and_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def two_rows_then_ctrl_c(*args: Any, on_row: Any, **kwargs: Any) -> None:
        on_row({"id": "q0"})
        on_row({"id": "q1"})
        raise KeyboardInterrupt

    monkeypatch.setattr(demur.evaluation.runner, "run_eval", two_rows_then_ctrl_c)
    out_dir = tmp_path / "o"
    data = _logged(tmp_path / "d.jsonl", 4)
    argv = ["eval", str(data), "--estimators", "mean_logprob", "--out", str(out_dir)]
    assert main(argv) == 130
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"interrupted: the 2 row(s) scored in this run are saved in {out_dir}. Rerun the same "
        "command to resume from there (--no-resume starts over)." in out
    )

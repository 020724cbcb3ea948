"""`demur review`: refuses to start without reviewers, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from demur.cli import main
from demur.queue import SqliteQueue
from tests.review.conftest import ANA, ticket_request


def test_without_reviewer_tokens_it_says_how_to_add_them(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.delenv("DEMUR_REVIEWER_TOKENS", raising=False)
    SqliteQueue(tmp_path / "queue.db").close()
    assert main(["review", "--queue-path", str(tmp_path / "queue.db")]) == 2
    err = capsys.readouterr().err
    assert "no reviewer can log in" in err and "REVIEWER:TOKEN" in err


def test_a_missing_queue_file_is_an_error(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setenv("DEMUR_REVIEWER_TOKENS", f"ana:{ANA}")
    assert main(["review", "--queue-path", str(tmp_path / "nope.db")]) == 2
    assert "there is no review queue" in capsys.readouterr().err


def test_queue_path_and_dsn_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["review", "--queue-path", "q.db", "--dsn", "postgresql://x/y"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_demur_review_serves_the_queue_until_sigterm(tmp_path: Path):
    db = tmp_path / "queue.db"
    queue = SqliteQueue(db)
    queue.enqueue(ticket_request("Who wrote Emma?"))
    queue.close()
    env = {**os.environ, "REVIEWERS": f"ana:{ANA}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demur.cli",
            "review",
            "--queue-path",
            str(db),
            "--port",
            "0",
            "--tokens-env",
            "REVIEWERS",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                url = json.loads(line)["url"]
        assert url is not None, "demur review did not start"
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        with urllib.request.urlopen(url + "/login", timeout=10) as response:
            assert "Reviewer token" in response.read().decode()
            assert "default-src 'none'" in response.headers["content-security-policy"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

"""What flags and the router config decide together: a flag, when given, wins."""

from __future__ import annotations

import argparse

import pytest
from pydantic import BaseModel, Field

from demur.cli import _options, main
from demur.config import default_config
from demur.errors import ConfigError
from demur.queue import SqliteQueue, TicketRequest


def args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"traces": None, "trace_file": None, **values})


def test_traces_come_from_the_config_unless_a_flag_says_otherwise():
    config = default_config()
    traces = _options.Traces.resolve(args(), config)
    assert (traces.exporter, traces.path) == (config.tracing.exporter, config.tracing.path)
    assert traces.destination == config.tracing.path  # jsonl: the file
    assert _options.Traces.resolve(args(traces="console"), config).destination == "console"
    assert _options.Traces.resolve(args(trace_file="t.jsonl"), config).path == "t.jsonl"


class Keys(BaseModel):
    port: int = Field(ge=0)
    key: str = Field(repr=False, min_length=8)


def test_settings_errors_read_like_config_errors_and_hide_secrets():
    with pytest.raises(ConfigError) as caught:
        _options.settings(Keys, "server settings", port=-1, key="abc")
    message = str(caught.value)
    assert message.startswith("invalid server settings: port: ")
    assert "(got -1)" in message and "abc" not in message


# --- where the review queue is: one name in every command ------------------------------------

QUEUE_COMMANDS = [["queue", "list"], ["queue", "stats"], ["queue", "export"], ["review"]]


@pytest.mark.parametrize("command", QUEUE_COMMANDS, ids=" ".join)
def test_every_queue_command_names_the_queue_file_queue_path(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    shown = capsys.readouterr().out
    assert "--queue-path FILE" in shown and "--dsn DSN" in shown
    assert "--path" not in shown.replace("--queue-path", "")


def test_queue_path_and_the_old_path_both_open_the_queue(tmp_path, capsys):
    db = tmp_path / "queue.db"
    queue = SqliteQueue(db)
    queue.enqueue(TicketRequest(question="Who wrote Emma?"))
    queue.close()
    assert main(["queue", "stats", "--queue-path", str(db)]) == 0
    said = capsys.readouterr()
    assert "1 tickets: 1 pending" in said.out and said.err == ""
    assert main(["queue", "stats", "--path", str(db)]) == 0
    said = capsys.readouterr()
    assert "1 tickets: 1 pending" in said.out
    assert said.err == "demur: warning: --path is deprecated; use --queue-path (same meaning)\n"


def test_a_missing_queue_file_names_the_option(tmp_path, capsys):
    assert main(["queue", "list", "--queue-path", str(tmp_path / "nope.db")]) == 2
    assert "check --queue-path" in capsys.readouterr().err


@pytest.mark.parametrize("old", ["--path", "--queue-path"])
def test_a_queue_file_and_a_dsn_exclude_each_other(old, capsys):
    with pytest.raises(SystemExit):
        main(["queue", "list", old, "q.db", "--dsn", "postgresql://x/y"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_without_a_queue_the_error_names_both_options(tmp_path, capsys):
    config = tmp_path / "demur.yaml"
    config.write_text("models: {m: {kind: scripted, replies: [hi]}}\npolicy: {threshold: 0.5}\n")
    assert main(["queue", "stats", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "--queue-path FILE (SQLite) or --dsn DSN (PostgreSQL)" in err

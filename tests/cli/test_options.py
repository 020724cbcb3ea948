"""What flags and the router config decide together: a flag, when given, wins."""

from __future__ import annotations

import argparse

import pytest
from pydantic import BaseModel, Field

from demur.cli import _options
from demur.config import default_config
from demur.errors import ConfigError


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

"""The `demur` command: `demur demo`, `demur ask QUESTION`, `demur eval DATA`,
`demur calibrate RESULTS`, `demur ensemble fit RESULTS`, `demur predictor fit ROWS...`,
`demur index PATH`, `demur serve`,
`demur review`, `demur queue`, `demur drift`, `demur config`.

One module per command adds its parser and runs it; `_options` resolves what flags and the
router config decide together, and `_render` prints tables and summaries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from demur._version import __version__
from demur.cli import (
    _ask,
    _calibrate,
    _config,
    _demo,
    _drift,
    _ensemble,
    _eval,
    _index,
    _predictor,
    _queue,
    _review,
    _serve,
)
from demur.errors import DemurError

# In the order `demur --help` lists them.
_COMMANDS = (
    _demo,
    _ask,
    _eval,
    _calibrate,
    _ensemble,
    _predictor,
    _index,
    _serve,
    _review,
    _queue,
    _drift,
    _config,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demur", description="Confidence-gated routing for LLM and RAG applications."
    )
    parser.add_argument("--version", action="version", version=f"demur {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except DemurError as exc:
        print(f"demur: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demur: interrupted", file=sys.stderr)
        return 130
    return code


__all__ = ["main"]

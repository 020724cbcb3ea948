"""`demur config show|check`: print the embedded default config, or validate a file."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    config = commands.add_parser("config", help="show the default config or check a file")
    config_actions = config.add_subparsers(dest="action", required=True)
    config_actions.add_parser("show", help="print the embedded default config")
    check = config_actions.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    config.set_defaults(run=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "show":
        print(resources.files("demur").joinpath("default_config.toml").read_text("utf-8"), end="")
        return 0
    from demur.config import load_config

    config = load_config(args.file)
    print(f"{args.file}: valid; models {', '.join(config.models)}; policy {config.policy.kind}")
    return 0

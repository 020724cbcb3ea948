"""`demur review`: the web app where reviewers claim and resolve the review queue's tickets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options, _web

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    review = commands.add_parser(
        "review",
        help="a web app where reviewers claim and resolve the review queue's tickets",
        description="Serve the reviewer web app: open tickets by priority and deadline, each "
        "with its question, context and scored candidates; claim, approve, edit, answer or "
        "reject. Reviewers sign in with a token; tokens come from --tokens-env and "
        "--tokens-file as REVIEWER:TOKEN entries. Needs pip install 'demur[server]'.",
    )
    _options.add_queue_options(review)
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    review.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    review.add_argument(
        "--tokens-env",
        default="DEMUR_REVIEWER_TOKENS",
        help="environment variable with REVIEWER:TOKEN entries, comma-separated "
        "(DEMUR_REVIEWER_TOKENS)",
    )
    review.add_argument(
        "--tokens-file", type=Path, help="a file of REVIEWER:TOKEN entries, one a line"
    )
    review.add_argument(
        "--lease", type=float, help="seconds a claim lasts (the queue's default, 300)"
    )
    _web.add_listener_options(review)
    review.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    review.set_defaults(run=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    from demur.review.run import serve_review  # fails early, naming the extra, without starlette
    from demur.review.settings import ReviewSettings

    settings = _options.settings(
        ReviewSettings,
        "review settings",
        host=args.host,
        port=args.port,
        tokens_env=args.tokens_env or None,
        tokens_file=args.tokens_file,
        lease_s=args.lease,
        log_level=args.log_level,
        **_web.listener_settings(args),
    )
    settings.resolved_tokens()  # before opening the queue: no token, no reviewer
    serve_review(_options.open_queue(args), settings, owns_queue=True)
    return 0

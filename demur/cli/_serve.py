"""`demur serve`: the OpenAI-compatible HTTP gateway whose answers are the router's verdicts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options, _web

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    server = commands.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP gateway whose answers are the router's verdicts",
        description="Serve /v1/chat/completions (streaming too), /v1/models, /healthz, /readyz "
        "and /metrics. Clients authenticate with 'Authorization: Bearer KEY'; keys come from "
        "--api-key-env and --api-key-file. Needs pip install 'demur[server]'.",
    )
    _options.add_router_options(server)
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    server.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    server.add_argument(
        "--api-key-env",
        default="DEMUR_API_KEYS",
        help="environment variable with the accepted keys, comma-separated (DEMUR_API_KEYS)",
    )
    server.add_argument("--api-key-file", type=Path, help="a file of accepted keys, one a line")
    server.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve without keys on a non-loopback address (only behind an authenticating proxy)",
    )
    server.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest request body (1 MiB)"
    )
    server.add_argument("--rate-limit", type=float, help="requests per second per key (no limit)")
    server.add_argument("--rate-burst", type=int, help="burst size per key (one second's worth)")
    server.add_argument("--max-in-flight", type=int, help="routes at once; more get 503")
    server.add_argument(
        "--route-timeout", type=float, help="seconds per route (the budget's deadline + 5)"
    )
    server.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to drain on SIGTERM (30)"
    )
    server.add_argument(
        "--metrics-require-auth",
        action="store_true",
        help="ask for an API key on /metrics too (default: open, like /healthz)",
    )
    server.add_argument(
        "--auth-failure-rate",
        type=float,
        help="failed authentications per second per client address, after the burst (1)",
    )
    server.add_argument(
        "--auth-failure-burst",
        type=int,
        help="failed authentications a client address may make at once (10)",
    )
    server.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web app origin (https://app.example.org) whose browser requests are served, "
        "with CORS headers; repeat for more, * for any (default: none, such requests get 403)",
    )
    _web.add_listener_options(server)
    server.add_argument("--model-name", default="demur", help="model id listed in /v1/models")
    server.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    server.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from demur.server.run import serve  # fails early, naming the extra, without starlette
    from demur.server.settings import ServerSettings, read_key_file

    optional = {
        "auth_failure_rate_per_s": args.auth_failure_rate,
        "auth_failure_burst": args.auth_failure_burst,
    }
    settings = _options.settings(
        ServerSettings,
        "server settings",
        host=args.host,
        port=args.port,
        api_keys=read_key_file(args.api_key_file) if args.api_key_file else (),
        api_key_env=args.api_key_env or None,
        allow_unauthenticated=args.allow_unauthenticated,
        max_body_bytes=args.max_body_bytes,
        rate_limit_rps=args.rate_limit,
        rate_limit_burst=args.rate_burst,
        max_in_flight=args.max_in_flight,
        route_timeout_s=args.route_timeout,
        shutdown_timeout_s=args.shutdown_timeout,
        model_name=args.model_name,
        log_level=args.log_level,
        metrics_require_auth=args.metrics_require_auth,
        cors_origins=tuple(args.cors_origin),
        **{name: value for name, value in optional.items() if value is not None},
        **_web.listener_settings(args),
    )
    settings.check_exposure(settings.resolved_keys())  # before loading any model
    config = _options.router_config(args)
    telemetry = _options.open_telemetry(args, config, default_service_name="demur-server")
    try:
        router = _options.build_router(config, telemetry)
        serve(router, settings, tracer_provider=telemetry.tracer_provider)
    finally:
        telemetry.shutdown()
    return 0

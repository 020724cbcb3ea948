"""ServerSettings: where the gateway listens, who may call it, and the limits it enforces."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from demur.errors import ConfigError
from demur.web.hosts import is_loopback
from demur.web.settings import ListenerSettings

DEFAULT_KEYS_ENV = "DEMUR_API_KEYS"
_ORIGIN = re.compile(r"^https?://[^/\s?#@]+$", re.IGNORECASE)
DEFAULT_PENDING_MESSAGE = "A person will answer this question; your review ticket is {ticket_id}."


class ServerSettings(ListenerSettings):
    """How `demur serve` runs.

    API keys come from `api_keys` and from the environment variable `api_key_env` (keys
    separated by commas or whitespace), read when the app is created. With no key at all the
    gateway serves without authentication, which it refuses on a host other than loopback
    unless `allow_unauthenticated` is set.

    `rate_limit_rps` is each API key's sustained rate (requests per second) with bursts of up
    to `rate_limit_burst`; without keys, each client address has its own bucket.
    `route_timeout_s` bounds a whole route (default: the router's deadline plus 5 s) and
    `max_in_flight` the routes running at once (more get 503 with Retry-After).

    Failed authentications (a wrong or missing key) are limited per client address to
    `auth_failure_rate_per_s` sustained with bursts of `auth_failure_burst`; past that the
    client gets 429 with Retry-After, its keys unchecked, until the bucket refills.
    `metrics_require_auth` makes `/metrics` ask for a key too. Browser requests from another
    origin (any `Origin` header) are refused with 403 unless the origin is in `cors_origins`
    (`*` for any), which then also get CORS headers and preflight answers. Connection
    limits, trusted proxies and allowed `Host` names: see ListenerSettings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: tuple[str, ...] = Field(default=(), repr=False)
    api_key_env: str | None = DEFAULT_KEYS_ENV
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)
    route_timeout_s: float | None = Field(default=None, gt=0)
    model_name: str = Field(default="demur", min_length=1)
    pending_message: str = DEFAULT_PENDING_MESSAGE
    metrics_require_auth: bool = False
    auth_failure_rate_per_s: float = Field(default=1.0, gt=0)
    auth_failure_burst: int = Field(default=10, ge=1)
    cors_origins: tuple[str, ...] = ()
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "info"

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"CORS origin {origin!r} is not an origin; give scheme, host and port as a "
                    "browser sends them, e.g. https://app.example.org or http://localhost:5173 "
                    "(no path, no trailing slash), or * for any"
                )
        return tuple(origin.lower() for origin in value)

    def resolved_keys(self, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """The configured keys plus those in `api_key_env`, without duplicates or blanks."""
        environ = os.environ if environ is None else environ
        keys = list(self.api_keys)
        if self.api_key_env:
            keys += split_keys(environ.get(self.api_key_env, ""))
        return tuple(dict.fromkeys(k for k in (k.strip() for k in keys) if k))

    @property
    def burst(self) -> int:
        """The bucket size: `rate_limit_burst`, else one second's worth of requests."""
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1, round(self.rate_limit_rps or 1))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def check_exposure(self, keys: tuple[str, ...]) -> None:
        """Refuse to serve unauthenticated on a reachable address unless told to."""
        if keys or self.loopback or self.allow_unauthenticated:
            return
        env = self.api_key_env or DEFAULT_KEYS_ENV
        raise ConfigError(
            f"refusing to serve on {self.host} without API keys: anyone who can reach it could "
            f"use the models. Set {env}=KEY1,KEY2 (clients send 'Authorization: Bearer KEY'), "
            "serve on 127.0.0.1, or pass --allow-unauthenticated if a proxy in front "
            "authenticates callers"
        )


def split_keys(text: str) -> list[str]:
    return [k for k in re.split(r"[,\s]+", text) if k]


def read_key_file(path: str | Path) -> tuple[str, ...]:
    """API keys from a file, one per line; blank lines and '#' comments are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror or exc}") from None
    keys = tuple(k for k in (line.strip() for line in lines) if k and not k.startswith("#"))
    if not keys:
        raise ConfigError(f"the API key file {path} holds no key; write one key per line")
    return keys


__all__ = ["DEFAULT_KEYS_ENV", "ServerSettings", "is_loopback", "read_key_file", "split_keys"]

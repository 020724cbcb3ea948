"""ReviewSettings: where the reviewer app listens, who may log in, and the limits it enforces."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import ConfigDict, Field

from demur.errors import ConfigError
from demur.queue.limits import MAX_LEASE_S
from demur.web.hosts import is_loopback
from demur.web.settings import ListenerSettings

DEFAULT_TOKENS_ENV = "DEMUR_REVIEWER_TOKENS"
MIN_TOKEN_CHARS = 16
_REVIEWER = re.compile(r"^[^\s:,#]{1,128}$")
_HOW = (
    "give each reviewer a token as REVIEWER:TOKEN, e.g. "
    f"{DEFAULT_TOKENS_ENV}='ana:{'x' * MIN_TOKEN_CHARS},ben:...' (make tokens with "
    "python -c 'import secrets; print(secrets.token_urlsafe(24))')"
)


class ReviewSettings(ListenerSettings):
    """How `demur review` runs.

    Reviewers log in with a token. `tokens` maps each token to a reviewer id; more come from
    the environment variable `tokens_env` and from `tokens_file`, as `REVIEWER:TOKEN` entries
    (separated by commas or whitespace in the variable, one a line in the file). They are read
    when the app is created; ConfigError when there is none, or one is shorter than 16 characters.

    `session_secret` signs session cookies (a random one per start by default, so a restart
    logs everyone out). `secure_cookies` marks cookies HTTPS-only; by default it is on unless
    the host is loopback. `lease_s` is how long a claim lasts (the queue's default if None;
    at most a week). Failed and successful logins share a token bucket per client address:
    `login_rate_per_s` sustained, bursts of `login_burst`. Connection limits, trusted
    proxies (which decide the client address those buckets go by) and allowed `Host` names:
    see ListenerSettings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    tokens_env: str | None = DEFAULT_TOKENS_ENV
    tokens_file: Path | None = None
    session_secret: str | None = Field(default=None, repr=False, min_length=16)
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    max_sessions: int = Field(default=10_000, ge=1)
    secure_cookies: bool | None = None
    lease_s: float | None = Field(default=None, gt=0, le=MAX_LEASE_S)
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    page_size: int = Field(default=50, ge=1, le=1000)
    login_rate_per_s: float = Field(default=1.0, gt=0)
    login_burst: int = Field(default=10, ge=1)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    log_level: str = "info"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def cookies_secure(self) -> bool:
        """Whether cookies carry `Secure` (only sent over HTTPS)."""
        return (not self.loopback) if self.secure_cookies is None else self.secure_cookies

    def resolved_tokens(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every accepted token and its reviewer id, from `tokens`, the variable and the file."""
        environ = os.environ if environ is None else environ
        found: dict[str, str] = {}
        _add(found, self.tokens.items(), "ReviewSettings.tokens")
        if self.tokens_env and environ.get(self.tokens_env, "").strip():
            entries = [e for e in re.split(r"[,\s]+", environ[self.tokens_env]) if e]
            _add(found, _pairs(entries, f"${self.tokens_env}"), f"${self.tokens_env}")
        if self.tokens_file is not None:
            _add(found, read_token_file(self.tokens_file), str(self.tokens_file))
        if not found:
            where = f"${self.tokens_env}" if self.tokens_env else "ReviewSettings.tokens"
            raise ConfigError(f"no reviewer can log in: {where} holds no token; {_HOW}")
        return found


def _pairs(entries: Iterable[str], source: str) -> list[tuple[str, str]]:
    pairs = []
    for i, entry in enumerate(entries, 1):
        reviewer, sep, token = entry.partition(":")
        if not sep:
            # The entry may be a bare token: name only its position, never its text.
            raise ConfigError(f"{source}, entry {i}: expected REVIEWER:TOKEN; {_HOW}")
        pairs.append((token.strip(), reviewer.strip()))
    return pairs


def _add(found: dict[str, str], pairs: Iterable[tuple[str, str]], source: str) -> None:
    for token, reviewer in pairs:
        if not _REVIEWER.match(reviewer):
            raise ConfigError(
                f"{source}: reviewer id {reviewer!r} is not usable; use 1-128 characters "
                "without spaces, ':', ',' or '#' (e.g. ana, ben.smith@example.org)"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{source}: the token of reviewer '{reviewer}' has {len(token)} characters; "
                f"use at least {MIN_TOKEN_CHARS} so it cannot be guessed; {_HOW}"
            )
        if found.get(token, reviewer) != reviewer:
            raise ConfigError(
                f"{source}: reviewers '{found[token]}' and '{reviewer}' share a token; "
                "give each reviewer their own"
            )
        found[token] = reviewer


def read_token_file(path: str | Path) -> list[tuple[str, str]]:
    """(token, reviewer) pairs from a file of `REVIEWER:TOKEN` lines; '#' starts a comment."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot read the reviewer token file {path}: {reason}") from None
    entries = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    if not entries:
        raise ConfigError(f"the reviewer token file {path} holds no entry; {_HOW}")
    return _pairs(entries, str(path))


__all__ = ["DEFAULT_TOKENS_ENV", "MIN_TOKEN_CHARS", "ReviewSettings", "read_token_file"]

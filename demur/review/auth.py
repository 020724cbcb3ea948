"""Reviewer login: tokens compared in constant time, signed session cookies, server-side sessions.

The cookie carries only a random session id, its expiry and an HMAC over both. Everything
else (the reviewer, the CSRF token, the lease tokens of the tickets the reviewer claimed)
stays in server memory, so a lease token never reaches the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ReviewerTokens:
    """The tokens that log a reviewer in, each mapped to a reviewer id."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        # Compare fixed-length digests, so the time taken says nothing of the tokens' lengths.
        self._tokens = [(_digest(token), reviewer) for token, reviewer in tokens.items()]

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def reviewers(self) -> list[str]:
        return sorted({reviewer for _, reviewer in self._tokens})

    def check(self, given: str | None) -> str | None:
        """The reviewer id for `given`, or None. Every token is compared, whatever matched."""
        if not given:
            return None
        wanted = _digest(given.strip())
        found = None
        for digest, reviewer in self._tokens:
            if hmac.compare_digest(wanted, digest) and found is None:
                found = reviewer
        return found


@dataclass
class Session:
    """A logged-in reviewer: who, until when, the CSRF token, and the leases they hold."""

    id: str
    reviewer: str
    csrf: str
    expires: float
    leases: dict[str, str] = field(default_factory=dict)  # ticket id -> lease token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SessionStore:
    """Sessions in memory, the oldest dropped beyond `max_sessions`; cookies signed with HMAC."""

    def __init__(
        self,
        secret: str | None,
        *,
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hashlib.sha256(
            b"demur-review-session:" + (secret or secrets.token_hex(32)).encode("utf-8")
        ).digest()
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def create(self, reviewer: str) -> tuple[Session, str]:
        """A new session for `reviewer` and its cookie value (always a fresh id: no fixation)."""
        now = self._clock()
        self._purge(now)
        session = Session(
            id=secrets.token_urlsafe(32),
            reviewer=reviewer,
            csrf=secrets.token_urlsafe(32),
            expires=now + self.ttl_s,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        payload = f"{session.id}.{int(session.expires)}"
        return session, f"{payload}.{self._sign(payload)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names; None when unsigned, tampered with, or expired."""
        if not cookie or len(cookie) > 256:
            return None
        payload, _, signature = cookie.rpartition(".")
        sid, _, expires = payload.partition(".")
        try:
            expected = self._sign(payload)
        except UnicodeEncodeError:
            return None
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return None
        now = self._clock()
        if not expires.isdigit() or int(expires) < now:
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires < now:
            self._sessions.pop(sid, None)
            return None
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def _purge(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires < now]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)


__all__ = ["ReviewerTokens", "Session", "SessionStore"]

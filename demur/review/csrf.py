"""CSRF protection: a per-session token in every form, and same-origin checks on every POST.

Three layers, each enough on its own against a cross-site form post: the session cookie is
`SameSite=Strict` (a cross-site request carries no session); every form carries the
session's token, compared in constant time; and a request whose `Origin` or
`Sec-Fetch-Site` header says it came from another site is refused. Before login, the login
form's token is bound to a short-lived cookie instead (the double-submit pattern), so
nobody can log a victim into the attacker's account.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

FIELD = "csrf"
LOGIN_COOKIE = "demur_review_login"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; False when either is missing."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


def cross_site(headers: Mapping[str, str]) -> str | None:
    """Why the request looks cross-site (from its Origin and Sec-Fetch-Site), or None."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"the browser says this request came from another site (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is None:
        return None  # older browsers and non-browser clients; the token still decides
    host = headers.get("host", "")
    parts = urlsplit(origin) if origin != "null" else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or parts.netloc.lower() != host.lower()
    ):
        return f"the request came from {origin!r}, not from this site ({host})"
    return None


__all__ = ["FIELD", "LOGIN_COOKIE", "cross_site", "new_token", "tokens_match"]

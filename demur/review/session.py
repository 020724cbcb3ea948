"""Signing in and out, the session of each request, and CSRF protection on every POST.

Three layers, each enough on its own against a cross-site form post: the session cookie is
`SameSite=Strict` (a cross-site request carries no session); every form carries the
session's token, compared in constant time; and a request whose `Origin` or
`Sec-Fetch-Site` header says it came from another site is refused. Before login, the login
form's token is bound to a short-lived cookie instead (the double-submit pattern), so
nobody can log a victim into the attacker's account.

The tokens and the session store themselves are in `demur.review.auth`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from demur.review import pages
from demur.review.auth import ReviewerTokens, Session, SessionStore
from demur.review.errors import LoginRequired, ReviewError
from demur.review.settings import ReviewSettings
from demur.web.limits import (
    BadContentLength,
    BodyTooLarge,
    RateLimiter,
    declared_length,
    read_limited,
)

logger = logging.getLogger("demur.review")

FIELD = "csrf"
SESSION_COOKIE = "demur_review"
LOGIN_COOKIE = "demur_review_login"
LOGIN_BODY_BYTES = 16 * 1024
_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 16


# --- tokens and origins ----------------------------------------------------------------------


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


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in; "/" for anything that could leave the site."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return "/"
    return value


# --- forms -----------------------------------------------------------------------------------


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The urlencoded form of a POST, read up to `limit` bytes; strict UTF-8."""
    content_type = request.headers.get("content-type", "")
    media, _, params = content_type.partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else ""
    if media.strip().lower() != _FORM or charset not in ("", "utf-8"):
        raise ReviewError(
            415,
            "Unsupported form",
            f"This page accepts forms sent as {_FORM} in UTF-8, not "
            f"{content_type or 'a body without a Content-Type'}.",
        )
    try:
        declared = declared_length(request.headers.get("content-length"))
        raw = await read_limited(request.stream(), limit, declared)
    except BadContentLength as exc:
        raise ReviewError(400, "Bad request", str(exc)) from None
    except BodyTooLarge:
        raise ReviewError(
            413,
            "Too large",
            f"The form is over this server's limit of {limit // 1024} KiB. Shorten the "
            "answer or the note and send it again.",
        ) from None
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise ReviewError(
            400,
            "Invalid text",
            "The form is not valid UTF-8 text; it was refused and nothing was changed.",
        ) from None
    except ValueError:
        raise ReviewError(
            400, "Bad request", f"The form has more than {_MAX_FIELDS} fields."
        ) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise ReviewError(400, "Bad request", f"The form sends {key!r} twice.")
        form[key] = value
    return form


def check_origin(request: Request) -> None:
    """403 for a request that looks cross-site."""
    problem = cross_site(request.headers)
    if problem is not None:
        logger.warning("refused a cross-site POST to %s: %s", request.url.path, problem)
        raise ReviewError(403, "Forbidden", f"Refused: {problem}. Use the forms on this site.")


# --- sessions --------------------------------------------------------------------------------


class SignIn:
    """Who may sign in, the live sessions, their cookies, and the sign-in endpoints."""

    def __init__(self, settings: ReviewSettings, *, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.tokens = ReviewerTokens(settings.resolved_tokens(environ))
        self.sessions = SessionStore(
            settings.session_secret,
            ttl_s=settings.session_ttl_s,
            max_sessions=settings.max_sessions,
        )
        self.limiter = RateLimiter(settings.login_rate_per_s, settings.login_burst)
        self.secure = settings.cookies_secure
        # `__Host-` cookies are refused by browsers unless Secure, on "/", with no Domain.
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = prefix + SESSION_COOKIE
        self.login_cookie = prefix + LOGIN_COOKIE

    def current(self, request: Request) -> Session | None:
        """The request's live session, or None."""
        return self.sessions.get(request.cookies.get(self.session_cookie))

    def require(self, request: Request) -> Session:
        """The request's live session; LoginRequired (back here after, for a page) without."""
        session = self.current(request)
        if session is None:
            if request.method in ("GET", "HEAD"):
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            else:
                path = "/"
            raise LoginRequired(path)
        return session

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """A signed-in POST's form, after the origin and CSRF checks."""
        check_origin(request)
        form = await read_form(request, self.settings.max_body_bytes)
        if not tokens_match(session.csrf, form.get(FIELD)):
            logger.warning(
                "refused a POST to %s without a valid CSRF token",
                request.url.path,
                extra={"demur": {"reviewer": session.reviewer}},
            )
            raise ReviewError(
                403,
                "Forbidden",
                "The form's security token is missing or out of date (it changes each time you "
                "sign in). Reload the page and try again.",
            )
        return form

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")

    def _login_page(self, next_path: str, status: int = 200, error: str | None = None) -> Response:
        token = new_token()
        response = HTMLResponse(pages.login_page(token, next_path, error), status_code=status)
        self._set_cookie(response, self.login_cookie, token, 3600)
        return response

    # --- endpoints -------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if self.current(request) is not None:
            return RedirectResponse(next_path, 303)
        return self._login_page(next_path)

    async def login(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = self.limiter.acquire(address)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise ReviewError(
                429,
                "Too many attempts",
                f"Too many sign-in attempts from this address; wait {seconds} s and try again.",
                back="/login",
                back_label="Back to sign in",
                headers={"Retry-After": str(seconds)},
            )
        check_origin(request)
        form = await read_form(request, LOGIN_BODY_BYTES)
        if not tokens_match(request.cookies.get(self.login_cookie), form.get(FIELD)):
            raise ReviewError(
                403,
                "Forbidden",
                "The sign-in form expired or did not come from this site. Reload the sign-in "
                "page and try again.",
                back="/login",
                back_label="Back to sign in",
            )
        next_path = safe_next(form.get("next"))
        reviewer = self.tokens.check(form.get("token"))
        if reviewer is None:
            logger.warning("failed sign-in", extra={"demur": {"client": address}})
            return self._login_page(next_path, 401, "That token is not valid.")
        _, cookie = self.sessions.create(reviewer)
        logger.info("signed in", extra={"demur": {"reviewer": reviewer, "client": address}})
        response = RedirectResponse(next_path, 303)
        self._set_cookie(response, self.session_cookie, cookie, int(self.settings.session_ttl_s))
        self._clear_cookie(response, self.login_cookie)
        return response

    def sign_out(self, session: Session) -> Response:
        """End `session`: the redirect to the sign-in page that clears its cookie."""
        self.sessions.drop(session)
        logger.info("signed out", extra={"demur": {"reviewer": session.reviewer}})
        response = RedirectResponse("/login", 303)
        self._clear_cookie(response, self.session_cookie)
        return response


__all__ = [
    "FIELD",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "SignIn",
    "check_origin",
    "cross_site",
    "new_token",
    "read_form",
    "safe_next",
    "tokens_match",
]

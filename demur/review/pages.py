"""The reviewer app's pages: Jinja2 templates in `templates/`, rendered with autoescape on.

Every value a template prints is escaped unless it is already markup (a macro's output), so
text from a model, a user or the queue can never open a tag or leave an attribute; None prints
as nothing. jinja2 is imported when the environment is first built (`environment()`, which
`create_review_app` calls), not when this module is.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from demur.errors import MissingDependencyError
from demur.queue.base import QueueStats, Ticket

if TYPE_CHECKING:
    import jinja2

CSS_PATH = "/static/review.css"


def ticket_url(ticket_id: str, action: str | None = None) -> str:
    path = "/tickets/" + quote(ticket_id, safe="")
    return f"{path}/{action}" if action else path


@dataclass(frozen=True)
class Filters:
    """The queue page's filters and paging."""

    text: str = ""
    min_priority: int | None = None
    offset: int = 0

    def query(self, offset: int) -> str:
        params: dict[str, str] = {}
        if self.text:
            params["q"] = self.text
        if self.min_priority is not None:
            params["min_priority"] = str(self.min_priority)
        if offset:
            params["offset"] = str(offset)
        return "/?" + urlencode(params) if params else "/"


# --- what the templates call -----------------------------------------------------------------


def duration(seconds: float) -> str:
    """A span of time, rounded to the unit that reads best: "45 s", "12 min", "3.5 h"."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def relative(moment: datetime, now: datetime) -> str:
    """How far `moment` is from now: "in 5 min", "2.0 h ago"."""
    delta = (moment - now).total_seconds()
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(delta)} ago"


def confidence(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def best_confidence(ticket: Ticket) -> float | None:
    return max((c.confidence for c in ticket.candidates if c.confidence is not None), default=None)


def best_candidate(ticket: Ticket) -> int:
    """The candidate an edit starts from: the most confident one (the last on ties)."""
    ranked = [
        (c.confidence if c.confidence is not None else -1.0, i)
        for i, c in enumerate(ticket.candidates)
    ]
    return max(ranked)[1]


def pretty_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# --- the environment -------------------------------------------------------------------------


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment, built once; MissingDependencyError without jinja2."""
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError:
        raise MissingDependencyError("jinja2", "server", "The demur reviewer app") from None

    def printed(value: object) -> object:
        # What `{{ value }}` prints: markup as it stands, None as nothing, anything else
        # escaped as `html.escape` does (autoescape then leaves the result alone).
        if hasattr(value, "__html__"):
            return value
        return Markup("" if value is None else html.escape(str(value), quote=True))

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("demur.review", "templates"),
        autoescape=True,
        finalize=printed,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates are package data: they change with the code
    )
    env.globals.update(
        css_path=CSS_PATH,
        ticket_url=ticket_url,
        best_candidate=best_candidate,
        best_confidence=best_confidence,
    )
    env.filters.update(
        duration=duration,
        relative=relative,
        confidence=confidence,
        shorten=shorten,
        pretty_json=pretty_json,
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(context)


@functools.cache
def stylesheet() -> str:
    return resources.files("demur.review").joinpath("static/review.css").read_text("utf-8")


# --- the pages -------------------------------------------------------------------------------


def login_page(csrf: str, next_path: str, error: str | None = None) -> str:
    return render(
        "login.html", login_token=csrf, next_path=next_path, error=error, reviewer=None, csrf=None
    )


def queue_page(
    tickets: Sequence[Ticket],
    stats: QueueStats,
    filters: Filters,
    *,
    has_more: bool,
    page_size: int,
    reviewer: str,
    csrf: str,
    now: datetime,
    notice: str | None = None,
) -> str:
    return render(
        "queue.html",
        tickets=tickets,
        stats=stats,
        filters=filters,
        has_more=has_more,
        page_size=page_size,
        reviewer=reviewer,
        csrf=csrf,
        now=now,
        notice=notice,
    )


def ticket_page(
    ticket: Ticket,
    *,
    reviewer: str,
    csrf: str,
    holding: bool,
    now: datetime,
    notice: str | None = None,
) -> str:
    return render(
        "ticket.html",
        ticket=ticket,
        reviewer=reviewer,
        csrf=csrf,
        holding=holding,
        now=now,
        notice=notice,
    )


def error_page(
    status: int,
    title: str,
    message: str,
    *,
    back: str = "/",
    back_label: str = "Back to the queue",
    claim: str | None = None,
    reviewer: str | None = None,
    csrf: str | None = None,
) -> str:
    """An error page; with `claim` (a ticket id) and a session, it offers that ticket's claim
    button."""
    return render(
        "error.html",
        status=status,
        title=title,
        message=message,
        back=back,
        back_label=back_label,
        claim=claim if csrf is not None else None,
        reviewer=reviewer,
        csrf=csrf,
    )


__all__ = [
    "CSS_PATH",
    "Filters",
    "environment",
    "error_page",
    "login_page",
    "queue_page",
    "stylesheet",
    "ticket_page",
    "ticket_url",
]

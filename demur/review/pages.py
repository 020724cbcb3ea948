"""The reviewer app's HTML, written by hand: every value is escaped unless it is already `Html`.

`render(TEMPLATE, name=value)` substitutes `$name` in a `string.Template`; a value that is not
`Html` goes through `html.escape(..., quote=True)`, so text from a model, a user or the queue
can never open a tag or leave an attribute. Only these functions make `Html`.
"""

from __future__ import annotations

import html
import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from demur.queue.base import CandidateAnswer, QueueStats, Ticket

CSS_PATH = "/static/review.css"


class Html(str):
    """Markup that is safe as it stands: `render` inserts it without escaping."""

    __slots__ = ()


def esc(value: object) -> Html:
    """`value` as HTML text: escaped, unless it is already `Html`; None is empty."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def render(template: str, **values: object) -> Html:
    return Html(string.Template(template).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Html], sep: str = "\n") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def ticket_url(ticket_id: str, action: str | None = None) -> str:
    path = "/tickets/" + quote(ticket_id, safe="")
    return f"{path}/{action}" if action else path


# --- formatting ------------------------------------------------------------------------------


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def when(moment: datetime | None, now: datetime, *, none: str = "—") -> Html:
    """A time in UTC, and how far it is from now."""
    if moment is None:
        return esc(none)
    delta = (moment - now).total_seconds()
    relative = f"in {_span(delta)}" if delta >= 0 else f"{_span(delta)} ago"
    return render(
        '<time datetime="$iso">$text</time> <span class="rel">($relative)</span>',
        iso=moment.isoformat(),
        text=moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        relative=relative,
    )


def deadline(ticket: Ticket, now: datetime) -> Html:
    if ticket.deadline is None:
        return esc("none")
    if ticket.deadline <= now and ticket.is_open:
        return render('<span class="overdue">overdue</span> $at', at=when(ticket.deadline, now))
    return when(ticket.deadline, now)


def confidence(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- the layout ------------------------------------------------------------------------------

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>$title · demur review</title>
<link rel="stylesheet" href="$css">
</head>
<body>
<header class="top"><a class="brand" href="/">demur review</a>$who</header>
<main>
$body
</main>
</body>
</html>
"""

_WHO = """<span class="who">signed in as <strong id="reviewer">$reviewer</strong>
<form method="post" action="/logout" class="inline">$csrf
<button type="submit" id="logout">Log out</button></form>
</span>"""


def csrf_field(token: str) -> Html:
    return render('<input type="hidden" name="csrf" value="$token">', token=token)


def layout(title: str, body: Html, *, reviewer: str | None = None, csrf: str | None = None) -> Html:
    who = (
        render(_WHO, reviewer=reviewer, csrf=csrf_field(csrf))
        if reviewer is not None and csrf is not None
        else Html("")
    )
    return render(_LAYOUT, title=title, css=CSS_PATH, who=who, body=body)


# --- login -----------------------------------------------------------------------------------

_LOGIN = """<h1>Sign in to review</h1>
$error
<form method="post" action="/login" class="login" autocomplete="off">
$csrf
<input type="hidden" name="next" value="$next">
<label for="token">Reviewer token</label>
<input type="password" id="token" name="token" required autofocus>
<button type="submit" id="login">Sign in</button>
</form>"""


def login_page(csrf: str, next_path: str, error: str | None = None) -> Html:
    problem = render('<p class="error" role="alert">$e</p>', e=error) if error else Html("")
    body = render(_LOGIN, error=problem, csrf=csrf_field(csrf), next=next_path)
    return layout("Sign in", body)


# --- the queue -------------------------------------------------------------------------------


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


_QUEUE = """<h1>Open tickets</h1>
$notice
<p class="stats" id="stats">$stats</p>
<form method="get" action="/" class="filters">
<label for="q">Text</label> <input type="search" id="q" name="q" value="$text" maxlength="1000">
<label for="min_priority">Min priority</label>
<input type="number" id="min_priority" name="min_priority" value="$min_priority" step="1">
<button type="submit">Filter</button> <a href="/">Clear</a>
</form>
$table
<nav class="pages">$pages</nav>"""

_ROW = """<tr class="ticket $cls">
<td class="num">$priority</td>
<td>$deadline</td>
<td><a class="open" href="$url">$question</a></td>
<td class="num">$candidates</td>
<td class="num">$best</td>
<td>$age</td>
<td>$state</td>
</tr>"""

_TABLE = """<table class="queue" id="queue">
<thead><tr><th>Priority</th><th>Deadline</th><th>Question</th><th>Answers</th>
<th>Best conf.</th><th>Waiting</th><th>State</th></tr></thead>
<tbody>
$rows
</tbody>
</table>"""


def _state(ticket: Ticket, reviewer: str, now: datetime) -> Html:
    if ticket.status == "claimed":
        holder = "you" if ticket.claimed_by == reviewer else ticket.claimed_by
        return render(
            "claimed by <strong>$who</strong>, lease until $until",
            who=holder,
            until=when(ticket.lease_expires_at, now),
        )
    return esc("waiting")


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
) -> Html:
    rows = [
        render(
            _ROW,
            cls=ticket.status,
            priority=ticket.priority,
            deadline=deadline(ticket, now),
            url=ticket_url(ticket.id),
            question=shorten(ticket.question, 160),
            candidates=len(ticket.candidates),
            best=confidence(
                max(
                    (c.confidence for c in ticket.candidates if c.confidence is not None),
                    default=None,
                )
            ),
            age=_span((now - ticket.created_at).total_seconds()),
            state=_state(ticket, reviewer, now),
        )
        for ticket in tickets
    ]
    table = (
        render(_TABLE, rows=join(rows))
        if rows
        else Html('<p class="empty" id="empty">No open ticket matches. Nothing to review.</p>')
    )
    pages = []
    if filters.offset > 0:
        previous = filters.query(max(0, filters.offset - page_size))
        pages.append(render('<a href="$u" rel="prev">← Previous</a>', u=previous))
    if has_more:
        pages.append(
            render(
                '<a href="$u" rel="next">Next →</a>', u=filters.query(filters.offset + page_size)
            )
        )
    counts = stats.counts
    summary = (
        f"{counts.get('pending', 0)} waiting, {counts.get('claimed', 0)} claimed, "
        f"{counts.get('resolved', 0)} resolved, {counts.get('cancelled', 0)} cancelled"
    )
    if stats.overdue:
        summary += f"; {stats.overdue} past their deadline"
    body = render(
        _QUEUE,
        notice=_notice(notice),
        stats=summary,
        text=filters.text,
        min_priority="" if filters.min_priority is None else filters.min_priority,
        table=table,
        pages=join(pages, " "),
    )
    return layout("Queue", body, reviewer=reviewer, csrf=csrf)


def _notice(text: str | None) -> Html:
    return render('<p class="notice" role="status">$t</p>', t=text) if text else Html("")


# --- one ticket ------------------------------------------------------------------------------

_TICKET = """<nav class="back"><a href="/">← Queue</a></nav>
<h1>Ticket <code id="ticket-id">$id</code></h1>
$notice
<dl class="facts">
<dt>State</dt><dd id="state">$state</dd>
<dt>Priority</dt><dd id="priority">$priority</dd>
<dt>Deadline</dt><dd id="deadline">$deadline</dd>
<dt>Asked</dt><dd>$created</dd>
<dt>Trace id</dt><dd><code id="trace-id">$trace</code></dd>
<dt>Claims so far</dt><dd>$claims</dd>
</dl>
<section><h2>Question</h2><p class="text" id="question">$question</p></section>
<section><h2>Why a person is asked</h2><p class="text" id="reason">$reason</p></section>
<section><h2>Context</h2>$context</section>
<section><h2>Candidate answers</h2>$candidates</section>
$metadata
<section id="review"><h2>Review</h2>$review</section>"""

_CANDIDATE = """<article class="candidate" id="candidate-$index">
<h3>#$index · <span class="model">$model</span> · confidence <strong>$confidence</strong></h3>
<p class="text answer">$text</p>
$scores
</article>"""

_SCORES = """<table class="scores">
<thead><tr><th>Estimator</th><th>Status</th><th>Confidence</th><th>Raw value</th><th>Detail</th>
</tr></thead>
<tbody>
$rows
</tbody>
</table>"""

_SCORE = """<tr><td>$estimator</td><td>$status</td><td class="num">$confidence</td>
<td class="num">$value</td><td>$detail</td></tr>"""


def _scores(candidate: CandidateAnswer) -> Html:
    if candidate.details:
        rows = [
            render(
                _SCORE,
                estimator=s.estimator,
                status=s.status,
                confidence=confidence(s.confidence),
                value="—" if s.value is None else f"{s.value:.4g}",
                detail=s.detail or "",
            )
            for s in candidate.details
        ]
    elif candidate.scores:
        rows = [
            render(_SCORE, estimator=name, status="", confidence=confidence(c), value="", detail="")
            for name, c in candidate.scores.items()
        ]
    else:
        return Html('<p class="muted">No per-estimator scores.</p>')
    return render(_SCORES, rows=join(rows))


def _candidates(ticket: Ticket) -> Html:
    if not ticket.candidates:
        return Html('<p class="muted">No model answered; write the answer yourself.</p>')
    return join(
        render(
            _CANDIDATE,
            index=i,
            model=c.model,
            confidence=confidence(c.confidence),
            text=c.text,
            scores=_scores(c),
        )
        for i, c in enumerate(ticket.candidates)
    )


def _context(ticket: Ticket) -> Html:
    if not ticket.context:
        return Html('<p class="muted">No passages came with the question.</p>')
    items = [render('<li><p class="text passage">$p</p></li>', p=p) for p in ticket.context]
    return render('<ol class="passages" id="context">$items</ol>', items=join(items))


def _metadata(ticket: Ticket) -> Html:
    if not ticket.metadata:
        return Html("")
    text = json.dumps(ticket.metadata, indent=2, ensure_ascii=False, default=str)
    return render(
        "<section><details><summary>Metadata</summary><pre>$m</pre></details></section>", m=text
    )


def _ticket_state(ticket: Ticket, reviewer: str, now: datetime) -> Html:
    if ticket.status == "claimed":
        return _state(ticket, reviewer, now)
    if ticket.status == "resolved":
        return render(
            "resolved ($kind) by <strong>$who</strong>", kind=ticket.resolution, who=ticket.reviewer
        )
    return esc(ticket.status if ticket.status == "cancelled" else "waiting for a reviewer")


# Forms post to the app itself; the CSRF token rides in each one.
_CLAIM = """<form method="post" action="$url" class="claim">$csrf
<button type="submit" id="claim">Claim this ticket</button>
</form>"""

_HOLDING = """<p class="holding" id="holding">You hold this ticket until $until.</p>
<div class="lease">
<form method="post" action="$renew" class="inline">$csrf
<button type="submit" id="renew">Extend the lease</button></form>
<form method="post" action="$release" class="inline">$csrf
<button type="submit" id="release">Release it unresolved</button></form>
</div>
<div class="actions">
$approve
$edit
<form method="post" action="$resolve" class="resolve" id="answer-form">$csrf
<input type="hidden" name="action" value="answer">
<h3>Write the answer</h3>
<textarea name="text" id="answer-text" rows="4" required></textarea>
$note
<button type="submit" id="answer-submit">Answer</button>
</form>
<form method="post" action="$resolve" class="resolve" id="reject-form">$csrf
<input type="hidden" name="action" value="reject">
<h3>Reject</h3>
<p class="muted">No candidate is right and there is no answer to give: the caller abstains.</p>
$note
<button type="submit" id="reject-submit">Reject</button>
</form>
</div>"""

_APPROVE = """<form method="post" action="$resolve" class="resolve" id="approve-form">$csrf
<input type="hidden" name="action" value="approve">
<h3>Approve a candidate as it stands</h3>
$choices
$note
<button type="submit" id="approve-submit">Approve</button>
</form>"""

_CHOICE = """<label class="choice"><input type="radio" name="candidate" value="$index"$checked>
#$index <span class="model">$model</span>: $text</label>"""

_EDIT = """<form method="post" action="$resolve" class="resolve" id="edit-form">$csrf
<input type="hidden" name="action" value="edit">
<h3>Correct a candidate</h3>
<label for="edit-candidate">Candidate</label>
<select name="candidate" id="edit-candidate">$options</select>
<textarea name="text" id="edit-text" rows="4" required>
$text</textarea>
$note
<button type="submit" id="edit-submit">Save the corrected answer</button>
</form>"""

_NOTE = '<label>Note <input type="text" name="note" maxlength="8000"></label>'

_RESOLVED = """<dl class="facts" id="resolution">
<dt>Resolution</dt><dd>$kind</dd>
<dt>Answer</dt><dd><p class="text" id="final-answer">$answer</p></dd>
<dt>Reviewer</dt><dd>$reviewer</dd>
<dt>Note</dt><dd class="text">$note</dd>
<dt>Closed</dt><dd>$at</dd>
</dl>"""


def _best(ticket: Ticket) -> int:
    """The candidate an edit starts from: the most confident one (the last on ties)."""
    ranked = [
        (c.confidence if c.confidence is not None else -1.0, i)
        for i, c in enumerate(ticket.candidates)
    ]
    return max(ranked)[1]


def _holding(ticket: Ticket, csrf: Html, now: datetime) -> Html:
    resolve = ticket_url(ticket.id, "resolve")
    approve = edit = Html("")
    if ticket.candidates:
        best = _best(ticket)
        choices = join(
            render(
                _CHOICE,
                index=i,
                checked=Html(" checked") if i == best else Html(""),
                model=c.model,
                text=shorten(c.text, 200),
            )
            for i, c in enumerate(ticket.candidates)
        )
        approve = render(_APPROVE, resolve=resolve, csrf=csrf, choices=choices, note=Html(_NOTE))
        options = join(
            render(
                '<option value="$i"$sel>#$i $model</option>',
                i=i,
                sel=Html(" selected") if i == best else Html(""),
                model=c.model,
            )
            for i, c in enumerate(ticket.candidates)
        )
        edit = render(
            _EDIT,
            resolve=resolve,
            csrf=csrf,
            options=options,
            text=ticket.candidates[best].text,
            note=Html(_NOTE),
        )
    return render(
        _HOLDING,
        until=when(ticket.lease_expires_at, now),
        renew=ticket_url(ticket.id, "renew"),
        release=ticket_url(ticket.id, "release"),
        resolve=resolve,
        csrf=csrf,
        approve=approve,
        edit=edit,
        note=Html(_NOTE),
    )


def _review(ticket: Ticket, *, holding: bool, csrf: Html, now: datetime) -> Html:
    if ticket.status in ("resolved", "cancelled"):
        return render(
            _RESOLVED,
            kind=ticket.resolution or ticket.status,
            answer=ticket.answer if ticket.answer is not None else "(none)",
            reviewer=ticket.reviewer or "—",
            note=ticket.note or "—",
            at=when(ticket.resolved_at, now),
        )
    if holding:
        return _holding(ticket, csrf, now)
    if ticket.status == "claimed":
        return render(
            '<p class="muted">$who holds this ticket until $until; it comes back to the queue '
            "if they release it or the lease runs out.</p>",
            who=ticket.claimed_by,
            until=when(ticket.lease_expires_at, now),
        )
    return render(_CLAIM, url=ticket_url(ticket.id, "claim"), csrf=csrf)


def ticket_page(
    ticket: Ticket,
    *,
    reviewer: str,
    csrf: str,
    holding: bool,
    now: datetime,
    notice: str | None = None,
) -> Html:
    token = csrf_field(csrf)
    body = render(
        _TICKET,
        id=ticket.id,
        notice=_notice(notice),
        state=_ticket_state(ticket, reviewer, now),
        priority=ticket.priority,
        deadline=deadline(ticket, now),
        created=when(ticket.created_at, now),
        trace=ticket.trace_id or "—",
        claims=ticket.claims,
        question=ticket.question,
        reason=ticket.reason or "—",
        context=_context(ticket),
        candidates=_candidates(ticket),
        metadata=_metadata(ticket),
        review=_review(ticket, holding=holding, csrf=token, now=now),
    )
    return layout(f"Ticket {ticket.id[:8]}", body, reviewer=reviewer, csrf=csrf)


# --- errors ----------------------------------------------------------------------------------

_ERROR = """<h1>$title</h1>
<p class="error" role="alert" id="error">$message</p>
$action
<p><a href="$back">$back_label</a></p>"""


def error_page(
    status: int,
    title: str,
    message: str,
    *,
    back: str = "/",
    back_label: str = "Back to the queue",
    action: Html | None = None,
    reviewer: str | None = None,
    csrf: str | None = None,
) -> Html:
    body = render(
        _ERROR,
        title=f"{status} · {title}",
        message=message,
        action=action or Html(""),
        back=back,
        back_label=back_label,
    )
    return layout(title, body, reviewer=reviewer, csrf=csrf)


def claim_button(ticket_id: str, csrf: str) -> Html:
    return render(_CLAIM, url=ticket_url(ticket_id, "claim"), csrf=csrf_field(csrf))


CSS = """
:root { color-scheme: light dark; --line: #8884; --muted: #777; --bad: #b3261e; --ok: #1b6e3a; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; }
header.top { display: flex; justify-content: space-between; align-items: center;
  padding: .5rem 1rem; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; text-decoration: none; color: inherit; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
form.inline { display: inline; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.muted, .rel { color: var(--muted); }
.error { color: var(--bad); font-weight: 600; }
.notice { color: var(--ok); font-weight: 600; }
.overdue { color: var(--bad); font-weight: 700; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left;
  vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.claimed { opacity: .7; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
article.candidate { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem;
  margin: .5rem 0; }
.actions { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr));
  gap: 1rem; }
form.resolve { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem; }
form.resolve textarea, form.login input { width: 100%; box-sizing: border-box; }
form.resolve label, form.resolve textarea, form.resolve select { display: block;
  margin: .3rem 0; }
form.filters { margin: 1rem 0; }
button { cursor: pointer; }
"""


__all__ = [
    "CSS",
    "CSS_PATH",
    "Filters",
    "Html",
    "claim_button",
    "error_page",
    "esc",
    "join",
    "layout",
    "login_page",
    "queue_page",
    "render",
    "ticket_page",
    "ticket_url",
]

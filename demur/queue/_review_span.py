"""The span of a human review, recorded when its ticket closes, in the trace of the route that
asked for it (the ticket keeps that route's trace and span ids)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from demur.queue.base import Ticket


def review_span(tracer: trace.Tracer, ticket: Ticket, now: datetime) -> None:
    """Record a `demur.review` span from the ticket's creation to its close (or `now`).

    Nothing is recorded for a ticket without a trace id, or with one that is not OpenTelemetry's.
    """
    if not ticket.trace_id:
        return
    try:
        trace_id = int(ticket.trace_id, 16)
        span_id = int(ticket.span_id, 16) if ticket.span_id else secrets.randbits(64) or 1
    except ValueError:
        return  # not an OpenTelemetry id: nothing to attach the span to
    parent = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    if not parent.is_valid:
        return
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    started = int(ticket.created_at.timestamp() * 1e9)
    ended = int((ticket.resolved_at or now).timestamp() * 1e9)
    attributes: dict[str, Any] = {
        "demur.ticket_id": ticket.id,
        "demur.ticket.status": ticket.status,
        "demur.ticket.priority": ticket.priority,
        "demur.review.claims": ticket.claims,
        "demur.review.wait_s": (ended - started) / 1e9,
    }
    if ticket.resolution is not None:
        attributes["demur.review.resolution"] = ticket.resolution
    if ticket.reviewer is not None:
        attributes["demur.review.reviewer"] = ticket.reviewer
    if ticket.approved is not None:
        attributes["demur.review.approved"] = ticket.approved
    span = tracer.start_span(
        "demur.review",
        context=context,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        start_time=started,
    )
    span.end(end_time=max(ended, started))


__all__ = ["review_span"]

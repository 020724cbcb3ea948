"""After a pending verdict: wait for the reviewer's answer, polling the queue.

`wait_verdict(queue, verdict, timeout_s=30)` (or `await await_verdict(...)`) blocks until the
ticket closes and returns the final `Verdict`; on timeout, the `fallback` action decides. The
reviewer may resolve the ticket from another process or machine. To be told instead of
waiting, see `demur.queue.watcher` (callbacks and signed webhooks).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from demur.errors import ConfigError, QueueError
from demur.queue.base import ReviewQueue, Ticket
from demur.queue.errors import InvalidTransition
from demur.types import Abstain, Accept, Verdict

Fallback = Abstain | Accept | None
ABSTAIN = Abstain()


def verdict_from_ticket(
    ticket: Ticket, pending: Verdict | None = None, *, waited_s: float = 0.0
) -> Verdict | None:
    """The final verdict of a closed ticket (None while it is open).

    approve, edit and answer give an "answered" verdict (`model` is the approved candidate's
    model, or "human" for a reviewer's own text); reject and cancel give "abstained".
    The pending verdict's steps, cost and trace id are kept.
    """
    if ticket.is_open:
        return None
    common: dict[str, Any] = {"ticket_id": ticket.id, "trace_id": ticket.trace_id}
    if pending is not None:
        common.update(
            steps=pending.steps,
            cost=pending.cost,
            trace_id=pending.trace_id or ticket.trace_id,
            latency_s=pending.latency_s + waited_s,
        )
    who = f"reviewer '{ticket.reviewer}'"
    if ticket.status == "cancelled":
        return Verdict(
            status="abstained", message=ticket.note or "The review was cancelled.", **common
        )
    if ticket.resolution == "reject":
        return Verdict(
            status="abstained",
            message=ticket.note or f"{who} found no right answer to give.",
            **common,
        )
    model = "human"
    if ticket.resolution == "approve" and ticket.approved is not None:
        model = ticket.candidates[ticket.approved].model
    verbs = {"approve": "approved", "edit": "corrected", "answer": "written"}
    return Verdict(
        status="answered",
        answer=ticket.answer,
        model=model,
        message=f"Answer {verbs.get(ticket.resolution or '', 'given')} by {who}.",
        **common,
    )


def _fallback(
    pending: Verdict | None, ticket_id: str, fallback: Fallback, timeout_s: float, waited_s: float
) -> Verdict:
    """What a wait that timed out returns, by the fallback action."""
    base = pending or Verdict(status="pending", ticket_id=ticket_id)
    latency = base.latency_s + waited_s
    if fallback is None:
        return base.model_copy(update={"latency_s": latency})
    if isinstance(fallback, Accept) and base.steps:
        index = base.steps[-1].index if fallback.step is None else fallback.step
        chosen = next((s for s in base.steps if s.index == index), None)
        if chosen is not None and chosen.candidate is not None:
            return base.model_copy(
                update={
                    "status": "answered",
                    "answer": chosen.candidate.text,
                    "model": chosen.model,
                    "confidence": chosen.confidence,
                    "calibrated": chosen.calibrated,
                    "message": f"No reviewer answered within {timeout_s:g}s; the model's "
                    "answer stands.",
                    "latency_s": latency,
                }
            )
    message = fallback.message if isinstance(fallback, Abstain) else None
    return base.model_copy(
        update={
            "status": "abstained",
            "answer": None,
            "message": message or f"No reviewer answered within {timeout_s:g}s.",
            "latency_s": latency,
        }
    )


def _target(verdict: Verdict | str) -> tuple[Verdict | None, str]:
    if isinstance(verdict, str):
        return None, verdict
    if verdict.ticket_id is None:
        raise QueueError(
            f"the verdict is {verdict.status!r} with no review ticket; only a pending verdict "
            "(status 'pending', with a ticket_id) can be waited on"
        )
    return verdict, verdict.ticket_id


def _check_timing(timeout_s: float, poll_s: float) -> None:
    if not timeout_s >= 0:
        raise ConfigError(f"timeout_s must be >= 0 seconds, got {timeout_s}")
    if not poll_s > 0:
        raise ConfigError(f"poll_s must be > 0 seconds, got {poll_s}")


def _on_timeout(queue: ReviewQueue, ticket_id: str, cancel: bool, reason: str) -> Ticket | None:
    """Cancel the ticket if asked; the ticket if a reviewer closed it in the meantime."""
    if not cancel:
        return None
    try:
        queue.cancel(ticket_id, reason=reason)
    except InvalidTransition:
        ticket = queue.get(ticket_id)  # resolved just before the cancel: the answer wins
        return ticket if ticket.status == "resolved" else None
    return None


class _Wait:
    """The waiting loop, written once for both drivers (as tenacity's `iter` serves `Retrying`
    and `AsyncRetrying`): `check()` reads the queue (blocking) and returns the final verdict, or
    None while the ticket is open and time remains; `pause()` is the sleep before the next check.
    """

    def __init__(
        self,
        queue: ReviewQueue,
        verdict: Verdict | str,
        timeout_s: float,
        fallback: Fallback,
        poll_s: float,
        cancel_on_timeout: bool,
    ) -> None:
        _check_timing(timeout_s, poll_s)
        self.pending, self.ticket_id = _target(verdict)
        self.queue = queue
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.poll_s = poll_s
        self.cancel_on_timeout = cancel_on_timeout
        self.started = time.monotonic()
        self.waited = 0.0
        self.delay = min(0.05, poll_s)

    def check(self) -> Verdict | None:
        self.waited = waited = time.monotonic() - self.started
        ticket = self.queue.get(self.ticket_id)
        final = verdict_from_ticket(ticket, self.pending, waited_s=waited)
        if final is not None or waited < self.timeout_s:
            return final
        note = _timeout_note(self.timeout_s)
        late = _on_timeout(self.queue, self.ticket_id, self.cancel_on_timeout, note)
        if late is not None:
            resolved = verdict_from_ticket(late, self.pending, waited_s=waited)
            assert resolved is not None
            return resolved
        return _fallback(self.pending, self.ticket_id, self.fallback, self.timeout_s, waited)

    def pause(self) -> float:
        seconds = min(self.delay, max(0.0, self.timeout_s - self.waited))
        self.delay = min(self.delay * 2, self.poll_s)
        return seconds


def wait_verdict(
    queue: ReviewQueue,
    verdict: Verdict | str,
    *,
    timeout_s: float,
    fallback: Fallback = ABSTAIN,
    poll_s: float = 0.5,
    cancel_on_timeout: bool = False,
) -> Verdict:
    """Block until the ticket of a pending verdict closes; return the final verdict.

    On timeout the `fallback` decides: `Abstain(message)` (the default) abstains, `Accept()`
    returns the model's last answer after all, None returns the verdict still pending. With
    `cancel_on_timeout`, the ticket is withdrawn so no reviewer spends time on it.
    """
    wait = _Wait(queue, verdict, timeout_s, fallback, poll_s, cancel_on_timeout)
    while True:
        final = wait.check()
        if final is not None:
            return final
        time.sleep(wait.pause())


async def await_verdict(
    queue: ReviewQueue,
    verdict: Verdict | str,
    *,
    timeout_s: float,
    fallback: Fallback = ABSTAIN,
    poll_s: float = 0.5,
    cancel_on_timeout: bool = False,
) -> Verdict:
    """`wait_verdict` for async code: the queue is read in a thread, the loop keeps running."""
    wait = _Wait(queue, verdict, timeout_s, fallback, poll_s, cancel_on_timeout)
    while True:
        final = await asyncio.to_thread(wait.check)
        if final is not None:
            return final
        await asyncio.sleep(wait.pause())


def _timeout_note(timeout_s: float) -> str:
    return f"cancelled: no reviewer answered within {timeout_s:g}s"


__all__ = ["await_verdict", "verdict_from_ticket", "wait_verdict"]

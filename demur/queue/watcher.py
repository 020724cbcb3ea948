"""Be told when reviewers are done: a callback or a signed webhook per closed ticket.

- `ResolutionWatcher(queue).on_resolved(callback, ticket_id=...)`: a callback per ticket, or
  for every ticket, called from a background thread (`start()`) or from `poll()`.
- `ResolutionWatcher(queue, webhooks=[Webhook(url, secret)])`: a signed POST per closed ticket.
  Receivers check it with `verify_webhook(body, headers["X-Demur-Signature"], secret)`.

The watcher polls the queue, so a ticket resolved from another process or machine is seen too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from demur.errors import ConfigError, QueueError
from demur.queue.base import ReviewQueue, Ticket
from demur.queue.errors import InvalidSignature
from demur.queue.waiting import _check_timing, verdict_from_ticket

logger = logging.getLogger("demur.queue")

SIGNATURE_HEADER = "X-Demur-Signature"


# --- webhooks --------------------------------------------------------------------------------


def _secret(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign_webhook(body: bytes, secret: str | bytes, *, timestamp: int | None = None) -> str:
    """The `X-Demur-Signature` header for `body`: `t=<unix time>,v1=<hex HMAC-SHA256>`.

    The HMAC covers `"<t>." + body`, so a captured delivery cannot be replayed much later.
    """
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(_secret(secret), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_webhook(
    body: bytes,
    signature: str | None,
    secret: str | bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a delivery's `X-Demur-Signature` header; InvalidSignature says what is wrong."""
    if not signature:
        raise InvalidSignature(f"the request has no {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in signature.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature(
            f"malformed {SIGNATURE_HEADER} header {signature!r}; expected 't=<unix time>,v1=<hex>'"
        ) from None
    age = (time.time() if now is None else now) - t
    if abs(age) > tolerance_s:
        raise InvalidSignature(
            f"the signature is {age:.0f}s old, outside the {tolerance_s:g}s tolerance; "
            "a replayed delivery, or a clock that is off"
        )
    expected = sign_webhook(body, secret, timestamp=t).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise InvalidSignature(
            "the signature does not match the body; check the shared secret, and verify the "
            "raw request body before parsing it"
        )


@dataclass(frozen=True)
class Webhook:
    """Where to POST closed tickets, and the secret that signs each delivery."""

    url: str
    secret: str | bytes = field(repr=False)
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 0.5
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"a webhook URL must start with http:// or https://, got {self.url!r}"
            )
        if not self.secret:
            raise ConfigError("a webhook needs a non-empty secret to sign its deliveries")
        if self.attempts < 1:
            raise ConfigError(f"webhook attempts must be >= 1, got {self.attempts}")

    @staticmethod
    def payload(ticket: Ticket) -> bytes:
        verdict = verdict_from_ticket(ticket)
        document = {
            "event": f"ticket.{ticket.status}",
            "delivery": f"{ticket.id}:{ticket.status}",
            "ticket": ticket.model_dump(mode="json"),
            "verdict": verdict.model_dump(mode="json", include={"status", "answer", "message"})
            if verdict is not None
            else None,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def deliver(self, ticket: Ticket) -> bool:
        """POST the ticket, retrying on network errors, 429 and 5xx; True once accepted (2xx)."""
        import urllib.error  # lazily: `import demur` stays light
        import urllib.request

        body = self.payload(ticket)
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "demur-webhook",
                    "X-Demur-Event": f"ticket.{ticket.status}",
                    "X-Demur-Delivery": f"{ticket.id}:{ticket.status}",
                    SIGNATURE_HEADER: sign_webhook(body, self.secret),
                    **self.headers,
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return True
                    retry = True
            except urllib.error.HTTPError as exc:
                retry = exc.code == 429 or exc.code >= 500
                logger.warning("webhook %s answered %s for %s", self.url, exc.code, ticket.id)
            except (urllib.error.URLError, OSError) as exc:
                retry = True
                logger.warning("webhook %s failed for ticket %s: %s", self.url, ticket.id, exc)
            if not retry or attempt == self.attempts:
                return False
            time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return False


# --- the watcher -----------------------------------------------------------------------------


class ResolutionWatcher:
    """Polls the queue for tickets that closed and tells callbacks and webhooks, once each.

        watcher = ResolutionWatcher(queue, webhooks=[Webhook(url, secret)])
        watcher.on_resolved(lambda t: print(t.answer), ticket_id=verdict.ticket_id)
        with watcher:                        # polls in a background thread
            ...

    Only tickets closed after `since` (default: now) are reported, plus any ticket watched by
    id, whenever it closed. `lookback_s` re-reads a short window before the newest close seen,
    so that a transaction committed late (or a clock slightly behind) is not missed.
    """

    def __init__(
        self,
        queue: ReviewQueue,
        *,
        poll_s: float = 1.0,
        since: datetime | None = None,
        lookback_s: float = 10.0,
        webhooks: Sequence[Webhook] = (),
        page: int = 500,
    ) -> None:
        _check_timing(0.0, poll_s)
        self.queue = queue
        self.poll_s = poll_s
        self.lookback = timedelta(seconds=lookback_s)
        self.webhooks: list[Webhook] = list(webhooks)
        self.page = page
        self._cursor = since or datetime.now(UTC)
        self._seen: dict[str, datetime] = {}
        self._everything: list[Callable[[Ticket], object]] = []
        self._by_ticket: dict[str, list[Callable[[Ticket], object]]] = {}
        self._check: set[str] = set()
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # one round at a time: each ticket notified once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def on_resolved(
        self, callback: Callable[[Ticket], object], *, ticket_id: str | None = None
    ) -> None:
        """Call `callback(ticket)` when `ticket_id` closes (or every ticket, without an id)."""
        with self._lock:
            if ticket_id is None:
                self._everything.append(callback)
            else:
                self._by_ticket.setdefault(ticket_id, []).append(callback)
                self._check.add(ticket_id)  # it may have closed already

    def add_webhook(self, webhook: Webhook) -> None:
        with self._lock:
            self.webhooks.append(webhook)

    def poll(self) -> list[Ticket]:
        """One round: find tickets closed since the last round, notify, and return them."""
        with self._polling:
            return self._poll()

    def _poll(self) -> list[Ticket]:
        with self._lock:
            check, self._check = self._check, set()
        closed: list[Ticket] = []
        for ticket_id in check:
            ticket = self.queue.get(ticket_id)
            if not ticket.is_open:
                closed.append(ticket)
        closed += self._closed_since(self._cursor - self.lookback)
        fresh = []
        for ticket in closed:
            if ticket.id in self._seen:
                continue
            assert ticket.resolved_at is not None
            self._seen[ticket.id] = ticket.resolved_at
            self._cursor = max(self._cursor, ticket.resolved_at)
            fresh.append(ticket)
        horizon = self._cursor - 2 * self.lookback
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        for ticket in fresh:
            self._notify(ticket)
        return fresh

    def _closed_since(self, since: datetime) -> list[Ticket]:
        found: list[Ticket] = []
        while True:
            batch = self.queue.tickets(
                status=("resolved", "cancelled"),
                resolved_since=since,
                order="resolved",
                limit=self.page,
                offset=len(found),
            )
            found += batch
            if len(batch) < self.page:
                return found

    def _notify(self, ticket: Ticket) -> None:
        with self._lock:
            callbacks = [*self._everything, *self._by_ticket.pop(ticket.id, [])]
            webhooks = list(self.webhooks)
        for callback in callbacks:
            try:
                callback(ticket)
            except Exception:
                self.failures += 1
                logger.exception("a resolution callback failed for ticket %s", ticket.id)
        for webhook in webhooks:
            if not webhook.deliver(ticket):
                self.failures += 1
                logger.error("webhook %s gave up on ticket %s", webhook.url, ticket.id)

    async def apoll(self) -> list[Ticket]:
        """`poll` for async code."""
        return await asyncio.to_thread(self.poll)

    def start(self) -> ResolutionWatcher:
        """Poll every `poll_s` seconds in a daemon thread until `stop()`."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="demur-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except QueueError:
                self.failures += 1
                logger.exception("polling the review queue failed; retrying")
            self._stop.wait(self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling (after a last round, so nothing closed before the call is missed)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout_s)
        self.poll()

    def __enter__(self) -> ResolutionWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ResolutionWatcher", "Webhook", "sign_webhook", "verify_webhook"]

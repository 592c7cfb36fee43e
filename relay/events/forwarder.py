"""The outbox's worker: forwards stored PassKit events to their Zapier or Make URL.

At least once: an event leaves the outbox only when its receiver answered 2xx. A failure (any
other status, a timeout, a refused connection) is retried after `first_retry` seconds, doubling
up to MAX_DELAY, until `give_up` seconds have passed since it became due; then it is marked
failed, and the console's Resend starts it again. A `forward_to` the URL guard refuses
(relay.access.urlguard: not a public https address) fails at once, saying why. Each forward
carries the event's id (in the body's `event_id` and the `X-Relay-Event-Id` header) so a
receiver can drop a repeat: a process killed after the receiver answered but before the row
was updated forwards it again.

What the receiver answers decides the next try: 410 Gone (a Zapier Catch Hook whose zap was
deleted, a Make webhook deactivated) gives the event up at once and alerts once through
RELAY_ALERT_URL (relay.delivery.alerts); 429 is tried again when its Retry-After says (seconds
or a date), never sooner; anything else not 2xx as above.

Every relay process runs one worker (started by the app's lifespan). Workers share the work
through leases (relay.store.outbox): a claimed event is invisible to other claims for LEASE
seconds, far longer than a forward may take (FORWARD_TIMEOUT), so no two processes forward one
event at once. A process that received an event wakes its own worker at once; others poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from relay.access.urlguard import UrlGuard, UrlRefused
from relay.delivery.alerts import Alerts
from relay.events.params import TEMPLATE
from relay.ids import unique_hex
from relay.store import DAY, EventState, PassKitEvent, Store
from relay.store.handle import StoreHandle

log = logging.getLogger("relay.passkit_events")
MAX_DELAY = 1800.0  # 30 minutes between tries at most
FORWARD_TIMEOUT = 10.0  # Zapier and Make answer a catch hook in well under a second
LEASE = 120.0
BATCH = 10
PURGE_EVERY = 3600.0


def next_delay(attempts: int, first: float, *, jitter: float = 0.1) -> float:
    """Seconds before try `attempts + 1`: first, 2×first, 4×first … up to MAX_DELAY, ±10 %
    so the events of one outage do not all return in the same second."""
    delay: float = min(first * 2.0 ** max(attempts - 1, 0), MAX_DELAY)
    return delay * (1 + random.uniform(-jitter, jitter))  # noqa: S311 - not a secret


def retry_after(header: str | None, now: float) -> float | None:
    """Seconds a 429's Retry-After asks to wait (a number or an HTTP date); None if unreadable."""
    text = (header or "").strip()
    if text.isdigit():
        return float(text)
    try:
        return max(parsedate_to_datetime(text).timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


GONE = "the Catch Hook is gone: turn the zap on or mint a new URL"


def where(url: str) -> str:
    """The receiver named without its path: a catch hook's path is its credential."""
    host = urlsplit(url).hostname or "the forward URL"
    if host.endswith("zapier.com"):
        return "your Zap"
    if host.endswith("make.com") or host.endswith("integromat.com"):
        return "your Make scenario"
    return host


async def refused_forwards(store: Store, guard: UrlGuard) -> list[str]:
    """One line per unrevoked PassKit events URL whose `forward_to` the guard refuses (minted
    before it did): the relay starts, names them, and sends them nothing."""
    lines = []
    for hook in await store.list_hooks(include_revoked=False):
        target = hook.params.get("forward_to", "") if hook.template == TEMPLATE else ""
        if target and (problem := guard.problem(target)):
            label = f" ({hook.label})" if hook.label else ""
            lines.append(f"hook {hook.id}{label}: nothing is sent to its forward_to: {problem}")
    return lines


class Forwarder:
    def __init__(
        self,
        store: StoreHandle,
        *,
        clock: Callable[[], float],
        first_retry: float = 10.0,
        give_up: float = DAY,
        retention: float = 30 * DAY,
        guard: UrlGuard,
        transport: httpx.AsyncBaseTransport | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.store = store
        self.guard = guard  # where it may send (relay.access.urlguard)
        self.alerts = alerts
        self.clock = clock
        self.first_retry = first_retry
        self.give_up = give_up
        self.retention = retention
        self.owner = "fw_" + unique_hex(12)
        self.poll = min(1.0, first_retry)
        self._wake = asyncio.Event()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None  # built when first needed, in the loop
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """An event was stored: forward it now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=FORWARD_TIMEOUT, follow_redirects=False, trust_env=False,
                transport=self.guard.transport(self._transport),
                headers={"User-Agent": "passkit-relay (PassKit events)"},
            )  # fmt: skip
        return self._client

    async def run_forever(self) -> None:
        purged_at = 0.0
        while True:
            try:
                if self.clock() - purged_at > PURGE_EVERY:
                    purged_at = self.clock()
                    await (await self.store.get()).purge_events(purged_at - self.retention)
                while await self.run_once() == BATCH:
                    pass  # a backlog: keep going without waiting
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away for a moment: try again next round
                log.exception("PassKit events: the outbox could not be read")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()

    async def run_once(self) -> int:
        """Forward what is due now; how many events were claimed."""
        store = await self.store.get()
        claimed = await store.claim_events(self.owner, self.clock(), lease=LEASE, limit=BATCH)
        await asyncio.gather(*(self.forward(event) for event in claimed))
        return len(claimed)

    async def forward(self, event: PassKitEvent) -> None:
        status: int | None = None
        refused = self.guard.problem(event.forward_to)
        wait: float | None = None  # a 429's Retry-After
        try:
            if refused:  # seen in the URL itself: no request is even built
                raise UrlRefused(refused)
            answer = await self.http().post(
                event.forward_to, json=event.body,
                headers={"X-Relay-Event-Id": event.id, "Idempotency-Key": event.id},
            )  # fmt: skip
            status = answer.status_code
            error = None if answer.is_success else f"{where(event.forward_to)} answered {status}"
            if status == 410:
                error = f"{where(event.forward_to)} answered 410 Gone: {GONE}"
            elif status == 429:
                wait = retry_after(answer.headers.get("Retry-After"), self.clock())
        except UrlRefused as exc:  # not a public https address: no try will do better
            error, refused = f"Not sent. {exc}", str(exc)
        except httpx.InvalidURL:
            refused = "the forward_to address could not be read"
            error = f"Not sent: {refused}."
        except httpx.TimeoutException:
            error = f"{where(event.forward_to)} did not answer within {FORWARD_TIMEOUT:.0f} s"
        except httpx.HTTPError:
            error = f"{where(event.forward_to)} could not be reached"
        store = await self.store.get()
        now = self.clock()
        if error is None:
            done = await store.finish_event(
                event.id,
                self.owner,
                state="forwarded",
                next_at=now,
                forwarded_at=now,
                status=status,
            )
            log.info("PassKit event %s %s forwarded (%d)", event.id, event.event, status)
            if self.alerts is not None:
                await self.alerts.forwarding_works(event.hook_id)
        else:
            delay = next_delay(event.attempts, self.first_retry)
            at = now + (delay if wait is None else max(wait, delay))
            state: EventState = "failed" if at - event.due_since > self.give_up else "pending"
            if status == 410 or refused:  # no retry reaches a deleted catch hook or a refused URL
                state, at = "failed", now
            done = await store.finish_event(
                event.id, self.owner, state=state, next_at=at, status=status, error=error
            )
            then = "given up" if state == "failed" else f"try {event.attempts + 1} due"
            log.info("PassKit event %s %s not forwarded: %s (%s)", event.id, event.event,
                     error, then)  # fmt: skip
        if not done:
            log.warning("PassKit event %s: the lease ran out during the forward", event.id)
        elif status == 410 and self.alerts is not None:
            await self.alerts.receiver_gone(event.hook_id, where(event.forward_to), now)

"""Alerts: one message to `RELAY_ALERT_URL` when a hook goes from working to failing (again at
most once an hour while it keeps failing), and one when it works again.

The URL takes `{"text": …}` (a Slack incoming webhook; a Zapier catch hook or a Make webhook
takes it too). Nothing here slows a delivery or can fail one: `observe` only puts the logged
record on a bounded queue (and only failures, or a success of a hook that was failing); a
background task decides through the store (`hook_alerts`, one atomic statement per outcome, so
processes sharing the database alert once between them) and hands the text to a second task
that posts it with a short timeout. A dead or slow alert URL costs one log line per message.

What fails a hook: any failed delivery but those the hook is not to blame for: a dry run (not
a delivery), a duplicate (not a failure), `rate_limited`, `client_gone`, `body_timeout` (the
sender's connection), `in_progress` (a concurrent duplicate) and `revoked_token` (the operator's
own doing). A sender's bad data (`missing_field`, `invalid_field`, …) counts: it is the zap that
is broken. Replays from the console are the operator's own checks, neither failure nor success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from relay.access.urlguard import UrlRefused, guard_of
from relay.delivery.templating import TemplateLibrary
from relay.settings import Settings
from relay.store import DeliveryRecord, HookFailing
from relay.store.handle import StoreHandle
from relay.ui.fixes import failure_of

log = logging.getLogger("relay.alerts")

NOT_THE_HOOK = {"rate_limited", "client_gone", "body_timeout", "in_progress", "revoked_token"}
WORKING = {"ok", "skipped", "ignored"}
REALERT_AFTER = 3600.0
MESSAGE_LIMIT = 300


def verdict(record: DeliveryRecord, *, dry_run: bool = False) -> bool | None:
    """True: a failure that counts against its hook; False: the hook worked; None: neither."""
    if record.hook_id is None or record.replay_of is not None or dry_run:
        return None
    if record.outcome == "failed":
        return None if record.error_code in NOT_THE_HOOK else True
    return False if record.outcome in WORKING else None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _times(n: int) -> str:
    return f"{n} failure{'s' if n != 1 else ''}"


def forwarding(hook_id: str) -> str:
    """Where a PassKit events URL's forwarding failures are counted: apart from the URL's own
    deliveries (PassKit reaching the relay works while the Catch Hook is gone)."""
    return f"{hook_id}:forward"


class Alerts:
    """Started and stopped by the app's lifespan; without `RELAY_ALERT_URL` it does nothing."""

    def __init__(
        self,
        settings: Settings,
        store: StoreHandle,
        library: TemplateLibrary,
        *,
        timeout: float = 5.0,
        queue_size: int = 1000,
        reload_every: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = settings.alert_url
        self.guard = guard_of(settings)
        self.public_url = settings.public_url
        self.store = store
        self.library = library
        self.timeout = timeout
        self.queue_size = queue_size
        self.reload_every = reload_every
        self.transport = transport
        # Hooks this process knows to be failing: only their successes reach the store.
        self.suspects: set[str] = set()
        self._events: asyncio.Queue[DeliveryRecord] | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self.dropped = 0

    @property
    def running(self) -> bool:
        return self._events is not None

    def observe(self, record: DeliveryRecord, *, dry_run: bool = False) -> None:
        """Note a logged delivery; never blocks, never raises."""
        if self._events is None:
            return
        failed = verdict(record, dry_run=dry_run)
        if failed is None or record.hook_id is None:
            return
        if not failed and record.hook_id not in self.suspects:
            return  # the common case: a working hook's success touches nothing
        if failed:
            self.suspects.add(record.hook_id)
        try:
            self._events.put_nowait(record)
        except asyncio.QueueFull:
            self._drop("deliveries")

    def _drop(self, what: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("alerts: queue full, %d %s not checked for alerts so far", self.dropped,
                        what)  # fmt: skip

    def refused(self) -> str | None:
        """Why RELAY_ALERT_URL may not be called (relay.access.urlguard); None when it may."""
        return self.guard.problem(self.url.reveal()) if self.url is not None else None

    async def start(self) -> None:
        if self.url is None or self.running:
            return
        if problem := self.refused():
            log.warning("alerts: off, nothing is sent to RELAY_ALERT_URL: %s", problem)
            return
        self._events = asyncio.Queue(self.queue_size)
        self._outbox = asyncio.Queue(100)
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            transport=self.guard.transport(self.transport),
            follow_redirects=False,
            trust_env=False,
        )
        self._tasks = [
            asyncio.create_task(self._decide(), name="relay-alerts-decide"),
            asyncio.create_task(self._send(), name="relay-alerts-send"),
            asyncio.create_task(self._reload(), name="relay-alerts-reload"),
        ]

    async def stop(self, grace: float = 2.0) -> None:
        """Send what is queued, for at most `grace` seconds, then stop."""
        events, outbox = self._events, self._outbox
        if events is None or outbox is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await events.join()
                await outbox.join()
        self._events = self._outbox = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the background tasks ------------------------------------------------------------------

    async def _decide(self) -> None:
        assert self._events is not None
        events = self._events
        while True:
            record = await events.get()
            try:
                await self.handle(record)
            except Exception as exc:  # noqa: BLE001 - an alert never takes anything down
                log.warning("alerts: could not check hook %s (%s)", record.hook_id,
                            type(exc).__name__)  # fmt: skip
            finally:
                events.task_done()

    async def handle(self, record: DeliveryRecord) -> None:
        """Decide through the store whether `record` starts (or recovers from) a failure."""
        assert record.hook_id is not None
        store = await self.store.get()
        if verdict(record):
            state = await store.note_hook_failure(
                record.hook_id, record.at, realert_after=REALERT_AFTER
            )
            self.suspects.add(record.hook_id)  # a success handled meanwhile took it out
            if state.alert:
                self._post(await self.failing_text(record, state))
            return
        cleared = await store.clear_hook_failure(record.hook_id)
        self.suspects.discard(record.hook_id)
        if cleared is not None:
            self._post(await self.recovered_text(record, cleared))

    def _post(self, text: str) -> None:
        if self._outbox is None:
            return
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self._drop("alerts")

    async def _send(self) -> None:
        assert self._outbox is not None and self._client is not None and self.url is not None
        outbox, client = self._outbox, self._client
        while True:
            text = await outbox.get()
            try:
                answer = await client.post(self.url.reveal(), json={"text": text})
                if answer.status_code >= 300:
                    log.warning("alerts: RELAY_ALERT_URL answered %d", answer.status_code)
            except UrlRefused as exc:  # its name leads to a private address: names the host
                log.warning("alerts: not sent to RELAY_ALERT_URL: %s", exc)
            except Exception as exc:  # noqa: BLE001 - never the URL: it is a credential
                log.warning("alerts: RELAY_ALERT_URL unreachable (%s)", type(exc).__name__)
            finally:
                outbox.task_done()

    async def _reload(self) -> None:
        """Learn every `reload_every` seconds of hooks other processes saw failing."""
        while True:
            try:
                self.suspects |= await (await self.store.get()).failing_hooks()
            except Exception as exc:  # noqa: BLE001
                log.warning("alerts: could not read the failing hooks (%s)", type(exc).__name__)
            await asyncio.sleep(self.reload_every)

    # -- the messages ------------------------------------------------------------------------

    async def hook_name(self, hook_id: str, template: str) -> str:
        """The hook's label, else its template in words."""
        hook = await (await self.store.get()).get_hook(hook_id)
        if hook is not None and hook.label.strip():
            return f"“{hook.label.strip()}”"
        name = hook.template if hook is not None else template
        if name == "stripe":
            return f"the Stripe endpoint {hook_id}"
        found = self.library.get(name)
        words = found.summary.rstrip(".") if found is not None and found.summary else name
        return f"“{words}” ({name}, {hook_id})"

    def link(self, hook_id: str, *, failed: bool = True) -> str:
        query = {"hook": hook_id, **({"outcome": "failed"} if failed else {})}
        return f"{self.public_url}/admin/deliveries?{urlencode(query)}"

    async def failing_text(self, record: DeliveryRecord, state: HookFailing) -> str:
        assert record.hook_id is not None
        name = await self.hook_name(record.hook_id, record.template)
        # The cause and fix in the console's words; the unquoted cause, so nothing the sender
        # sent (a name, an email) leaves for the chat channel.
        failure = failure_of(record)
        cause = failure.cause_unquoted or failure.cause if failure else ""
        said = _clip(f"{_sentence(cause)} Fix: {failure.fix}" if failure and failure.fix
                     else _sentence(cause or "it failed"))  # fmt: skip
        still = "is still failing" if state.alerted_at > state.failing_since else "is failing"
        return (
            f"Hook {name} {still}: {said} {_times(state.failures)} since "
            f"{_when(state.failing_since)}. Failed deliveries: {self.link(record.hook_id)} "
            f"(technical: {record.error_code or 'error'}, HTTP {record.status})"
        )

    # -- PassKit events URLs (relay.events.forwarder) --------------------------------------

    async def receiver_gone(self, hook_id: str, receiver: str, at: float) -> None:
        """A PassKit events URL's receiver answered 410 Gone: alert once (again at most once
        an hour while it stays gone, as a failing hook is). Never raises."""
        if not self.running:
            return
        try:
            state = await (await self.store.get()).note_hook_failure(
                forwarding(hook_id), at, realert_after=REALERT_AFTER
            )
            self.suspects.add(forwarding(hook_id))
            if state.alert:
                hook = await (await self.store.get()).get_hook(hook_id)
                name = f"“{hook.label.strip()}”" if hook and hook.label.strip() else hook_id
                self._post(
                    f"PassKit events URL {name}: {receiver} answered that the Catch Hook is "
                    "gone: turn the zap on or mint a new URL. Its events are not retried; "
                    f"Resend them once it works: {self.public_url}/admin/events (technical: "
                    f"HTTP 410, {_times(state.failures)} since {_when(state.failing_since)})"
                )
        except Exception as exc:  # noqa: BLE001 - an alert never takes anything down
            log.warning("alerts: could not note hook %s (%s)", hook_id, type(exc).__name__)

    async def forwarding_works(self, hook_id: str) -> None:
        """An event reached its receiver: a gone receiver is back (a cheap set lookup else)."""
        if forwarding(hook_id) not in self.suspects:
            return
        try:
            cleared = await (await self.store.get()).clear_hook_failure(forwarding(hook_id))
            self.suspects.discard(forwarding(hook_id))
            if cleared is not None:
                self._post(f"PassKit events URL {hook_id} forwards again.")
        except Exception as exc:  # noqa: BLE001
            log.warning("alerts: could not clear hook %s (%s)", hook_id, type(exc).__name__)

    async def recovered_text(self, record: DeliveryRecord, state: HookFailing) -> str:
        assert record.hook_id is not None
        name = await self.hook_name(record.hook_id, record.template)
        return (
            f"Hook {name} works again: a delivery succeeded at {_when(record.at)} after "
            f"{_times(state.failures)} since {_when(state.failing_since)}. "
            f"Deliveries: {self.link(record.hook_id, failed=False)}"
        )

"""A PassKit events hook's "Send a sample" (`/admin/hooks/{id}/sample`): a confirmation page
(the sample reaches the live zap or scenario), then the sample put in the outbox and forwarded
like a real event (relay.events.sample). The hook's page says when the last real event came."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.session import Session
from relay.events.flatten import ALL_EVENT_NAMES, EVENT_NAMES, chosen_events, sentence
from relay.events.forwarder import where
from relay.events.params import TEMPLATE, every_family
from relay.events.sample import NotASampleEvent, send_sample
from relay.store import HookRecord, PassKitEvent
from relay.ui.html import form_text

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext


def sample_events(record: HookRecord) -> list[str]:
    """The events a sample can be of: those the URL forwards."""
    allowed = ALL_EVENT_NAMES if every_family(record.params) else EVENT_NAMES
    chosen = [e for e in chosen_events(record.params.get("events", "")) if e in allowed]
    return chosen or list(allowed)


def last_event_words(event: PassKitEvent | None) -> str:
    """ "The last event from PassKit came at 2026-11-23 12:00 UTC: Pass installed by …"."""
    if event is None:
        return "No event from PassKit yet: send a sample to let your zap learn the fields."
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(event.received_at))
    return f"The last event from PassKit came at {when}: {sentence(event.body)}."


class HookSamples:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console
        self.root = console.root

    def routes(self) -> list[BaseRoute]:
        path = f"{self.root}/hooks/{{id}}/sample"
        return [Route(path, self.console.guarded(self.sample), methods=["GET", "POST"])]

    async def sample(self, request: Request, session: Session) -> Response:
        store = await self.console.store()
        record = await store.get_hook(request.path_params["id"])
        if record is None or record.template != TEMPLATE or record.revoked:
            return self.console.render("message.html", session, "hooks", title="No sample",
                                       heading="No sample to send", link=f"{self.root}/hooks",
                                       message="Samples are for PassKit events hooks that are "
                                       "not revoked.", status=404)  # fmt: skip
        to = where(str(record.params.get("forward_to", "")))
        if request.method == "POST":
            event = form_text(await request.form(), "event") or "installed"
            try:
                await send_sample(store, record.id, record.params, event, time.time())
            except NotASampleEvent as exc:
                notice = f"No sample sent: {exc}."
            else:
                forwarder = getattr(request.app.state, "forwarder", None)
                if forwarder is not None:
                    forwarder.wake()
                notice = (f"Sample “{event}” sent to {to}. It carries sample: true, so a filter "
                          "step can skip samples; see it under PassKit events.")  # fmt: skip
            query = urlencode({"notice": notice})
            return RedirectResponse(f"{self.root}/hooks/{record.id}?{query}", 303)
        last = await store.last_real_event(record.id)
        return self.console.render("hook_sample.html", session, "hooks", title="Send a sample",
                                   record=record, to=to, events=sample_events(record),
                                   last=last_event_words(last))  # fmt: skip

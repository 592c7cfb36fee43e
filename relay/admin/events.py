"""The console's PassKit events page (`/admin/events`): every event PassKit sent to a
`/passkit/…` URL, said in words ("Pass installed by Mara Quist — forwarded to your Zap at
14:02"), whether it is forwarded, waiting or given up on, with a Resend button."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.session import Session
from relay.events.flatten import sentence
from relay.events.forwarder import where
from relay.store import EVENT_STATES, PassKitEvent
from relay.ui.html import when

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

SHOWN = 100


def _clock(at: float | None) -> str:
    return time.strftime("%H:%M", time.gmtime(at)) if at else "–"


def _day(at: float) -> str:
    return when(at)  # the console's one date format


def status_words(event: PassKitEvent) -> str:
    """Where the event stands, in one sentence."""
    to = where(event.forward_to)
    if event.state == "forwarded":
        return f"forwarded to {to} at {_clock(event.forwarded_at)} UTC"
    if event.state == "failed":
        return f"not forwarded: {event.last_error or to + ' did not take it'}; gave up after " \
               f"{event.attempts} tries — Resend when {to} works again"  # fmt: skip
    tries = f"{event.attempts} time{'s' if event.attempts != 1 else ''}"
    if event.attempts and event.next_at <= time.time():  # due now: a Resend, or a retry
        return f"waiting to be sent again to {to} (sent {tries} before)"
    if event.attempts:
        return f"{event.last_error or to + ' did not take it'}; trying again at " \
               f"{_clock(event.next_at)} UTC (tried {tries})"  # fmt: skip
    return f"waiting to be forwarded to {to}"


def row(event: PassKitEvent) -> dict[str, Any]:
    return {"id": event.id, "what": sentence(event.body), "status": status_words(event),
            "state": event.state, "received": _day(event.received_at), "event": event.event,
            "hook_id": event.hook_id, "pass_id": event.body.get("pass_id", ""),
            "last_status": event.last_status}  # fmt: skip


class EventsPage:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console

    def routes(self) -> list[BaseRoute]:
        r, guarded = self.console.root, self.console.guarded
        return [
            Route(f"{r}/events", guarded(self.events), methods=["GET"]),
            Route(f"{r}/events/{{id}}/resend", guarded(self.resend), methods=["POST"]),
        ]

    async def events(self, request: Request, session: Session) -> Response:
        state = request.query_params.get("state", "")
        chosen = next((s for s in EVENT_STATES if s == state), None)
        store = await self.console.store()
        listed = await store.list_events(state=chosen, limit=SHOWN)
        return self.console.render("events.html", session, "events", title="PassKit events",
                                   rows=[row(e) for e in listed], states=EVENT_STATES,
                                   state=chosen or "",
                                   notice=request.query_params.get("notice", ""))  # fmt: skip

    async def resend(self, request: Request, session: Session) -> Response:
        """First a page asking to confirm (the Zap or scenario gets the event again), then
        (confirmed) the resend, and back to the list (POST/redirect/GET)."""
        store = await self.console.store()
        event = await store.get_event(request.path_params["id"])
        if event is not None and (await request.form()).get("confirmed") != "yes":
            return self.console.render(
                "event_resend.html", session, "events", title="Resend?", event=row(event),
                to=where(event.forward_to),
            )  # fmt: skip
        if event is None:
            notice = "That event is no longer kept (events are kept for the retention period)."
        elif await store.resend_event(event.id, time.time()):
            to = where(event.forward_to)
            notice = f"{sentence(event.body)}: it will be sent again to {to} in a moment."
        else:
            notice = "That event is being sent right now: look again in a minute."
        return RedirectResponse(f"{self.console.root}/events?notice={quote(notice)}", 303)

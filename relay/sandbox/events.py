"""The sandbox's PassKit webhooks: pass events signed as PassKit signs them
(relay.events.signature) and sent to a URL, as PassKit's Integrations › Webhooks does.

    POST /_sandbox/webhook  {"url": …, "secret": …}      where to send events (GET: the URL, sent)
    POST /_sandbox/events   {"event": "installed", "pass_id": … | "external_id": …,
                             "wallet": "apple" | "google"}  (or member.enrolled, coupon.redeemed …)
    POST /pass/{id}/wallet  event=installed|uninstalled: the pass card's wallet buttons

"created" is sent by itself when a member, coupon or ticket is created. The body is PassKit's
SinkSubscriptionPayload shape: {"event": "PASS_EVENT_…", "pass": {id, classId, protocol,
externalId, personDetails, metadata, recordData}}; installs are sent as PUT, as PassKit does.
Membership and coupon events (MEMBER_EVENT_ENROLLED, COUPON_EVENT_REDEEMED …) come in the same
payload; their HTTP verbs are not published (created and enrolled are sent as POST here, deleted
as DELETE, the others as PUT).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from relay.events.flatten import EVENTS, FAMILY_EVENTS
from relay.events.signature import HEADER, sign
from relay.sandbox.bodies import json_object
from relay.sandbox.state import Record, State

NAMES = {short: long for long, short in (EVENTS | FAMILY_EVENTS).items()}
METHODS = {
    "created": "POST",
    "deleted": "DELETE",
    "member.enrolled": "POST",
    "coupon.created": "POST",
    "coupon.deleted": "DELETE",
}  # the others are PUT
STATUS = {
    "installed": "PASS_INSTALLED",
    "uninstalled": "PASS_UNINSTALLED",
    "invalidated": "PASS_INVALIDATED",
}  # metadata.status after the event; else issued
WALLET = {"apple": "INSTALLED_APPLE", "google": "INSTALLED_GOOGLE"}
INSTALLED_AT = "2026-11-23T12:00:00Z"  # the sandbox's first install; the last one is now
CREATES = {"members.Members.enrolMember": "members",
           "single_use_coupons.SingleUseCoupons.createCoupon": "coupons",
           "event_tickets.EventTickets.issueTicket": "tickets"}  # fmt: skip
PROTOCOLS = {"members": "MEMBERSHIP", "coupons": "SINGLE_USE_COUPON", "tickets": "EVENT_TICKETING"}


def payload(
    event: str, kind: str, record: Record, wallet: str = "apple", now: str = INSTALLED_AT
) -> dict[str, Any]:
    person = record.get("person") or {}
    data = {"person.emailAddress": person.get("emailAddress"),
            "person.displayName": person.get("displayName")}  # fmt: skip
    if kind == "members":
        data |= {"members.member.externalId": record.get("externalId"),
                 "members.program.id": record.get("programId"),
                 "members.tier.id": record.get("tierId"),
                 "members.member.points": record.get("points")}  # fmt: skip
        data |= {
            f"members.member.metaData.{k}": v for k, v in (record.get("metaData") or {}).items()
        }
    class_id = record.get("programId") or record.get("campaignId") or record.get("productionId")
    return {"event": NAMES[event], "pass": {
        "id": record["id"], "classId": class_id, "protocol": PROTOCOLS[kind],
        "externalId": record.get("externalId") or record.get("ticketNumber"),
        "personDetails": {k: person[k] for k in ("forename", "surname", "displayName",
                                                  "emailAddress", "mobileNumber") if k in person},
        "metadata": metadata(event, wallet, now),
        "recordData": {k: str(v) for k, v in data.items() if v is not None},
    }}  # fmt: skip


def metadata(event: str, wallet: str, now: str) -> dict[str, Any]:
    """PassKit's io.Metadata after `event`: an install names its wallet and times."""
    data: dict[str, Any] = {"status": STATUS.get(event, "PASS_ISSUED")}
    if event in ("installed", "uninstalled"):
        data |= {"firstInstalledAt": INSTALLED_AT, "lastInstalledAt": now,
                 "lifecycleEvents": ["RENDERED", WALLET.get(wallet, WALLET["apple"])]}  # fmt: skip
    if event == "uninstalled":
        data |= {"lastUninstalledAt": now}
    return data


@dataclass
class EventSink:
    state: State
    url: str = ""
    secret: str = field(default="", repr=False)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def find(self, message: dict[str, Any]) -> tuple[str, Record] | None:
        tables = {"members": self.state.members, "coupons": self.state.coupons,
                  "tickets": self.state.tickets}  # fmt: skip
        for kind, table in tables.items():
            for record in table.values():
                if message.get("pass_id") and record["id"] == message["pass_id"]:
                    return kind, record
                if (
                    message.get("external_id")
                    and record.get("externalId") == message["external_id"]
                ):
                    return kind, record
        return None

    async def fire(
        self, event: str, kind: str, record: Record, wallet: str = "apple"
    ) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        body = json.dumps(payload(event, kind, record, wallet, now)).encode()
        note: dict[str, Any] = {"event": event, "pass_id": record["id"]}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.request(
                    METHODS.get(event, "PUT"), self.url, content=body,
                    headers={"content-type": "application/json", HEADER: sign(body, self.secret)},
                )  # fmt: skip
            note["status"] = answer.status_code
        except httpx.HTTPError as exc:
            note["error"] = type(exc).__name__
        self.sent.append(note)
        return note

    def firing(
        self, kind: str, op: Callable[[State, Record], Any]
    ) -> Callable[[State, Record], Any]:
        """`op` (a create), then "created" sent in the background when a URL is set."""

        def create(state: State, message: Record) -> Any:
            result = op(state, message)
            table = {"members": state.members, "coupons": state.coupons, "tickets": state.tickets}
            record = table[kind].get(result.get("id", "")) if isinstance(result, dict) else None
            if self.url and record is not None:
                asyncio.get_running_loop().create_task(self.fire("created", kind, dict(record)))
            return result

        return create

    def wallet_buttons(self, pass_id: str, sent: str) -> str:
        """The pass card's stand-in for a phone: buttons that send "installed" or
        "uninstalled" as PassKit would when the pass is added or removed; "" with no URL set."""
        if not self.url:
            return ""
        note = f'<p role="status">Sent “{escape(sent)}” to the relay.</p>' if sent in NAMES else ""
        return (
            f'<form class="wallet" method="post" action="{escape(pass_id)}/wallet">{note}'
            "<p>No phone here: these send the event PassKit sends when the pass is added to a "
            "wallet or removed from it.</p>"
            '<button name="event" value="installed">Add to a wallet</button>'
            '<button name="event" value="uninstalled">Remove from the wallet</button></form>'
        )

    def routes(self) -> list[Route]:
        async def configure(request: Request) -> Response:
            given = await _json_object(request)
            if isinstance(given, Response):
                return given
            if not isinstance(given.get("url"), str):  # never cleared by a body that forgot it
                why = 'send {"url": …, "secret": …}; {"url": ""} turns events off'
                return JSONResponse({"error": why}, status_code=400)
            self.url, self.secret = given["url"], str(given.get("secret", ""))
            return JSONResponse({"url": self.url})

        async def show(request: Request) -> Response:
            return JSONResponse({"url": self.url, "sent": self.sent})

        async def fire(request: Request) -> Response:
            given = await _json_object(request)
            if isinstance(given, Response):
                return given
            event = str(given.get("event", ""))
            found = self.find(given)
            if event not in NAMES or found is None or not self.url:
                why = (
                    f"event must be one of {', '.join(NAMES)}, the pass must exist (pass_id or "
                    "external_id), and POST /_sandbox/webhook must set a URL"
                )
                return JSONResponse({"error": why}, status_code=400)
            wallet = str(given.get("wallet") or "apple").lower()
            return JSONResponse(await self.fire(event, *found, wallet=wallet))

        async def wallet(request: Request) -> Response:
            pass_id = request.path_params["id"]
            event = str((await request.form()).get("event", ""))
            found = self.find({"pass_id": pass_id})
            if event in ("installed", "uninstalled") and found is not None and self.url:
                await self.fire(event, *found)
            # Back to the card (relative: the sandbox may be mounted under a prefix).
            return RedirectResponse(f"../{pass_id}?sent={event}", 303)

        return [
            Route("/pass/{id}/wallet", wallet, methods=["POST"]),
            Route("/_sandbox/webhook", configure, methods=["POST"]),
            Route("/_sandbox/webhook", show, methods=["GET"]),
            Route("/_sandbox/events", fire, methods=["POST"]),
        ]


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object, or the 400 that says it is not one (never a 500)."""
    given = json_object(await request.body())
    if given is None:
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return given

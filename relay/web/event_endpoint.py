"""PassKit's own webhooks in, flat events out to Zapier or Make: `POST|PUT|DELETE /passkit/{token}`.

The stages, one module each: token → hook (`tokens`, `revocations`) → signature
(`passkit_signature`, on the raw body) → flat record (`passkit_flatten`) → the hook's `events=`
filter → the durable outbox (`store.outbox`), answered 200 once stored → forwarded by the
worker (`passkit_forwarder`). Every request, refused or not, is one delivery-log entry.

The URL is minted like a hook's (`relay url passkit-events --param forward_to=URL`), and
PassKit's webhook settings take it as their target URL; PassKit sends POST, PUT or DELETE
depending on the event, so all three are taken.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.brokentext import BROKEN_ESCAPE, mend
from relay.delivery.pipeline import Trace
from relay.errors import InvalidBody, NotConfigured, WrongEndpoint
from relay.events import signature as passkit_signature
from relay.events.flatten import NotAnEvent, flatten, wanted
from relay.events.forwarder import Forwarder
from relay.events.params import TEMPLATE, every_family
from relay.store import DAY, PassKitEvent
from relay.web.endpoints import Endpoints, read_body, request_id_of

SIGNATURE_SCOPE = "passkit-signature"  # idempotency keys: the signatures each hook accepted


def event_id(hook_id: str, nonce: str, body: bytes) -> str:
    """The same for the same signed request (PassKit sending it again), new for a new one."""
    digest = hashlib.sha256(f"{hook_id}\n{nonce}\n".encode() + body).hexdigest()
    return "evt_" + digest[:24]


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# The event's fields that say who it is about: logged with the delivery, so its row names them.
WHO = ("display_name", "first_name", "last_name", "email", "external_id")


class PassKitEvents:
    def __init__(self, endpoints: Endpoints, forwarder: Forwarder) -> None:
        self.endpoints = endpoints
        self.s = endpoints.s
        self.forwarder = forwarder
        self.secrets = [s.reveal() for s in self.s.settings.passkit_webhook_secrets]

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        hook = self.s.signer.verify(request.path_params["token"])
        async with self.endpoints.recording("passkit", hook, request, request_id, started) as entry:
            entry.template = TEMPLATE  # what it is logged as, also when the URL is a wrong one
            await self.s.revocations.check(hook.id)
            if hook.template != TEMPLATE:
                raise WrongEndpoint(
                    "This URL is not a PassKit events URL: PassKit's webhooks go to a URL "
                    "minted for passkit-events (it starts with /passkit/).",
                    hint="Mint one with relay url passkit-events --param forward_to=URL, or "
                    "choose PassKit events in the admin console's New hook form.",
                )
            if not self.secrets:
                raise NotConfigured(
                    "PassKit events are off: PASSKIT_WEBHOOK_SECRET is not set on this relay.",
                    hint="Set PASSKIT_WEBHOOK_SECRET to the webhook's signing secret from PassKit.",
                )
            body = await read_body(request, self.s.settings.body_limit)
            header = request.headers.get(passkit_signature.HEADER)
            now = self.s.timestamp()
            nonce = passkit_signature.verify(body, header, self.secrets, now=now)
            _, signature = passkit_signature.parse_header(header or "")
            who: dict[str, str] = {}
            entry.answer = await self.accept(hook.id, hook.params, body, nonce, now,
                                             request.method, entry.trace, signature,
                                             who)  # fmt: skip
            # Who it was about, so the log's row says so (redacted and sealed like any payload).
            entry.logged = {k: entry.answer[k] for k in ("event", "event_id") if k in entry.answer}
            entry.logged |= who
            entry.status = 200
        return JSONResponse(entry.answer | {"request_id": request_id})

    async def accept(
        self,
        hook_id: str,
        params: Any,
        body: bytes,
        nonce: str,
        now: float,
        method: str,
        trace: Trace,
        signature: bytes = b"",
        who: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The answer for a verified event: stored for forwarding, or ignored by `events=`; a
        signature this hook accepted before is a replay (however its nonce and body were cut
        from the signed text): answered as the first one was, not forwarded again. `who` is
        given who the event is about (name, email, external id), for the log."""
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise InvalidBody("The signed body is not JSON.") from None
        if BROKEN_ESCAPE.search(body):  # half an emoji can be neither sealed nor forwarded
            event = mend(event)
        ident = event_id(hook_id, nonce, body)
        typed = every_family(params)
        try:
            flat = flatten(event, event_id=ident, received_at=iso(now), method=method,
                           typed=typed)  # fmt: skip
        except NotAnEvent as exc:
            raise InvalidBody(str(exc)) from None
        trace.operation = f"passkit.{flat['event']}"
        if who is not None:
            who.update({k: str(flat[k]) for k in WHO if flat.get(k)})
        answer: dict[str, Any] = {"ok": True, "event": flat["event"], "event_id": ident}
        chosen = str(params.get("events") or "")
        if not wanted(flat, chosen, every_family=typed):
            only = chosen or "the six pass events (it was made before membership and coupon "
            only += "" if chosen else "events were forwarded: make a new URL for them)"
            return answer | {"ignored": True, "reason": f"this URL forwards only {only}"}
        store = await self.s.store.get()
        # Remembered in the store, so every process knows it; as long as idempotency keys.
        seen = await store.claim(f"{SIGNATURE_SCOPE}:{hook_id}", signature.hex(), now,
                                 ttl=self.s.settings.idempotency_days * DAY)  # fmt: skip
        if seen.state != "won":
            first = seen.body or ident
            return answer | {"event_id": first, "queued": True, "duplicate": True}
        record = PassKitEvent(ident, hook_id, flat["event"], now, str(params["forward_to"]), flat)
        try:
            stored = await store.enqueue_event(record)
        except BaseException:
            await store.release(seen)  # not stored: PassKit's retry must get through
            raise
        await store.complete(seen, 200, ident)
        self.forwarder.wake()
        return answer | {"queued": True} | ({} if stored else {"duplicate": True})

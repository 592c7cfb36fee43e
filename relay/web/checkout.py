"""The customer's pass on Stripe Checkout's success page: `GET /checkout/{CHECKOUT_SESSION_ID}`.

Stripe sends the customer to `success_url` (…/checkout/{CHECKOUT_SESSION_ID}, the id filled in
by Stripe) as soon as they have paid; the pass is issued when the relay handles the session's
`checkout.session.completed`, which may arrive a few seconds later. So the page reads the
relay's own record of that event (relay.store.checkouts, written by `record_checkout`) and:

- shows the pass (wallet buttons through PassKit's pass URL, a QR code for a desktop, the
  program's name) once the record is there;
- while it is not, says so and reloads itself every few seconds (a meta refresh: no script),
  for about two minutes, then says what to do;
- answers an id that is not a Checkout session's (`cs_…`) at once, without the database.

No Stripe API key is involved, and the page shows nothing the customer's pass does not show.
Session ids are unguessable, yet each client address gets a bucket of tries
(relay.access.ratelimit).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import replace
from typing import Any

import segno
from starlette.requests import Request
from starlette.responses import Response

from relay.access.ratelimit import HookRateLimit
from relay.access.tokens import Hook
from relay.delivery.services import Services
from relay.errors import RateLimited
from relay.passkit.account import load_account
from relay.passkit.client import PassKitClient
from relay.passkit.operations import dig
from relay.store import CheckoutRecord
from relay.ui.html import page

log = logging.getLogger("relay")

SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{6,250}")  # Stripe's: cs_test_a1B2…, cs_live_…
REFRESH_SECONDS = 3
MAX_TRIES = 40  # 40 reloads 3 s apart: about two minutes of waiting for Stripe's event
NAMES_TTL = 600.0  # seconds a program's name (or PassKit's silence) is remembered
NAMES_WAIT = 2.0  # seconds the page waits for PassKit's names before showing the pass without
# A refreshing page asks every 3 s; a shop's Wi-Fi may hold several customers at once.
RATE, BURST = 1.0, 60.0


def is_session_id(text: str) -> bool:
    return SESSION_ID.fullmatch(text) is not None


async def record_checkout(
    services: Services, hook: Hook, event: dict[str, Any], answer: dict[str, Any]
) -> None:
    """Keep the pass a Checkout session's event issued or found, for the success page. Only
    the blind index of the customer's email is stored (relay.sealing), never the email."""
    session = event["data"]["object"]
    session_id = session.get("id")
    pass_id, pass_url = answer.get("id"), answer.get("pass_url")
    if not (str(event.get("type", "")).startswith("checkout.session.") and answer.get("ok")):
        return
    if not (isinstance(session_id, str) and is_session_id(session_id)):
        return
    if not (isinstance(pass_id, str) and isinstance(pass_url, str)):
        return  # skipped or ignored: no pass to show
    email = dig(session, ("customer_details", "email")) or session.get("customer_email")
    program_id = hook.params.get("program_id")
    record = CheckoutRecord(
        session_id=session_id,
        hook_id=hook.id,
        pass_id=pass_id,
        pass_url=pass_url,
        program_id=program_id,
        program_name=None,
        person=services.sealer.blind(email) if isinstance(email, str) and email else None,
        created_at=services.timestamp(),
    )
    await (await services.store.get()).save_checkout(record)


class ProgramNames:
    """Programs' names from PassKit's account (relay.passkit.account), read once per NAMES_TTL by
    one caller at a time; a failed read is remembered too, so a slow PassKit is asked rarely."""

    def __init__(self, client: PassKitClient) -> None:
        self.client = client
        self._names: dict[str, str] = {}
        self._read_at = -NAMES_TTL
        self._lock = asyncio.Lock()

    async def name(self, program_id: str) -> str | None:
        async with self._lock:
            if time.monotonic() - self._read_at >= NAMES_TTL:
                self._read_at = time.monotonic()
                try:
                    account = await load_account(self.client, timeout=NAMES_WAIT * 4)
                except Exception:  # noqa: BLE001 - the pass shows without its program's name
                    log.warning("checkout page: PassKit's program names could not be read")
                else:
                    self._names = {p.id: p.name for p in account.programs}
        return self._names.get(program_id)


def qr_svg(url: str) -> str:
    """The pass URL as an inline SVG QR code (segno), sized by the page's CSS."""
    code = segno.make(url, error="m")
    svg = code.svg_inline(scale=1, border=4, omitsize=True, svgclass="qr", dark="#000",
                          light="#fff")  # fmt: skip
    label = "QR code of your pass: scan it with your phone's camera"
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def apple_first(request: Request) -> bool:
    """Whether the Apple Wallet button leads (an Apple device), else Google Wallet's."""
    agent = request.headers.get("user-agent", "")
    return "Android" not in agent


class CheckoutPage:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.limit = HookRateLimit(RATE, burst=BURST)
        self.names = ProgramNames(services.client)

    async def show(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        client = request.client.host if request.client else "unknown"
        try:
            self.limit.take(client)
        except RateLimited as exc:
            answer = _page("busy", 429)
            answer.headers["Retry-After"] = str(int(exc.retry_after or 1))
            return answer
        if not is_session_id(session_id):
            return _page("unknown", 404)
        store = await self.s.store.get()
        record = await store.get_checkout(session_id)
        if record is None:
            tries = _tries(request.query_params.get("try", ""))
            if tries >= MAX_TRIES:
                return _page("late", 200)
            return _page("waiting", 200, refresh=REFRESH_SECONDS, next_try=tries + 1)
        name = record.program_name or await self._program_name(record)
        return _page("pass", 200, record=record, program_name=name,
                     qr=qr_svg(record.pass_url), apple_first=apple_first(request))  # fmt: skip

    async def _program_name(self, record: CheckoutRecord) -> str | None:
        """The program's name from PassKit (kept on the record once known), or None."""
        if not record.program_id:
            return None
        try:
            name = await asyncio.wait_for(asyncio.shield(self.names.name(record.program_id)),
                                          NAMES_WAIT)  # fmt: skip
        except TimeoutError:
            return None
        if name:
            await (await self.s.store.get()).save_checkout(replace(record, program_name=name))
        return name


def _tries(text: str) -> int:
    return min(int(text), MAX_TRIES) if text.isdigit() and len(text) < 4 else 0


def _page(state: str, status: int, **context: Any) -> Response:
    context = {"refresh": None, "next_try": 0, "record": None, "program_name": None,
               "qr": "", "apple_first": True, **context}  # fmt: skip
    answer = page("checkout.html", status, state=state, max_minutes=2, **context)
    answer.headers["X-Robots-Tag"] = "noindex, nofollow"
    answer.headers["X-Checkout-State"] = state  # what the waiting page's script looks for
    return answer

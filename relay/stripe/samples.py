"""Minimal Stripe events for `relay stripe-sample`: what Stripe sends, signed as Stripe signs it.

Enough of each event for the shipped templates (API version 2025-03-31 and later), with a fresh
event id every time, so the relay treats each sample as a new event and not as Stripe's retry.
The demo's banner prints the command that posts one; `stripe trigger` does the same for a real
Stripe account.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from relay.stripe.events import sign

API_VERSION = "2025-09-30.clover"
MONTH = 30 * 24 * 3600


def _ids(prefix: str) -> str:
    return f"{prefix}_demo{secrets.token_hex(6)}"


def checkout_session_completed(customer: str, email: str, name: str, now: int) -> dict[str, Any]:
    return {
        "id": _ids("cs"),
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "customer": customer,
        "customer_details": {"email": email, "name": name},
        "subscription": _ids("sub"),
        "metadata": {},
        "created": now,
    }


def invoice_paid(customer: str, email: str, name: str, now: int) -> dict[str, Any]:
    subscription = _ids("sub")
    return {
        "id": _ids("in"),
        "object": "invoice",
        "status": "paid",
        "amount_paid": 5000,
        "currency": "gbp",
        "customer": customer,
        "customer_email": email,
        "customer_name": name,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": {}},
        },
        "lines": {
            "object": "list",
            "data": [{
                "id": _ids("il"),
                "object": "line_item",
                "period": {"start": now, "end": now + MONTH},
                "pricing": {"type": "price_details",
                            "price_details": {"price": "price_demo_gold", "product": "prod_demo"}},
            }],
        },
        "created": now,
    }  # fmt: skip


def subscription_deleted(customer: str, email: str, name: str, now: int) -> dict[str, Any]:
    return {
        "id": _ids("sub"),
        "object": "subscription",
        "status": "canceled",
        "customer": customer,
        "metadata": {},
        "ended_at": now,
    }


REFUNDED = 2000  # the sample refund: 20.00 of a 50.00 charge


def charge_refunded(customer: str, email: str, name: str, now: int) -> dict[str, Any]:
    """A partial refund of a paid charge (for tier_for_spend: 20.00 GBP off the spend)."""
    return {
        "id": _ids("ch"),
        "object": "charge",
        "amount": 5000,
        "amount_captured": 5000,
        "amount_refunded": REFUNDED,
        "currency": "gbp",
        "customer": customer,
        "billing_details": {"email": email, "name": name},
        "paid": True,
        "refunded": False,
        "status": "succeeded",
        "metadata": {},
        "created": now,
    }


Builder = Callable[[str, str, str, int], dict[str, Any]]
SAMPLES: dict[str, Builder] = {
    "checkout.session.completed": checkout_session_completed,
    "invoice.paid": invoice_paid,
    "customer.subscription.deleted": subscription_deleted,
    "charge.refunded": charge_refunded,
}
# What Stripe puts in data.previous_attributes: the refund grew amount_refunded from 0.
PREVIOUS: dict[str, dict[str, Any]] = {"charge.refunded": {"amount_refunded": 0}}


def sample_event(
    event_type: str,
    *,
    customer: str | None = None,
    email: str = "ana@example.com",
    name: str = "Ana Díaz",
    now: int | None = None,
) -> dict[str, Any]:
    """A snapshot event of `event_type` with a fresh id; KeyError for a type not in SAMPLES."""
    build = SAMPLES[event_type]
    when = int(time.time()) if now is None else now
    return {
        "id": _ids("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": when,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": build(customer or _ids("cus"), email, name, when)}
        | ({"previous_attributes": PREVIOUS[event_type]} if event_type in PREVIOUS else {}),
    }


def post_sample(
    url: str, secret: str, event: dict[str, Any], *, timeout: float = 30
) -> httpx.Response:
    """POST `event` to `url` with a Stripe-Signature made with `secret`, as Stripe does."""
    body = json.dumps(event, ensure_ascii=False).encode()
    headers = {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"}
    return httpx.post(url, content=body, headers=headers, timeout=timeout)

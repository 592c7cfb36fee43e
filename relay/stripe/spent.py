"""What one Stripe event adds to (or takes from) a customer's total spend. No I/O:
relay.stripe.spend keeps the ledger; the `tier_for_spend` setting and Stripe's amounts are read
by relay.forms.spend_tiers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.passkit.operations import dig

SPEND_EVENTS = ("invoice.paid", "charge.refunded")


@dataclass(frozen=True)
class Spent:
    """What one Stripe event changes in a customer's total (negative for a refund)."""

    event_id: str
    customer: str  # Stripe's customer id (cus_…)
    currency: str  # upper case
    amount: int  # Stripe's units (minor, except zero-decimal currencies)
    email: str  # for the blind index only; never stored


def spent_by(event: Mapping[str, Any]) -> Spent | None:
    """The change `event` makes to its customer's spend; None for other events, events with
    no customer, and ones that change nothing."""
    kind, obj = event.get("type"), dig(event, ("data", "object"))
    if kind not in SPEND_EVENTS or not isinstance(obj, Mapping):
        return None
    customer = dig(obj, ("customer", "id")) or obj.get("customer")
    currency = obj.get("currency")
    if not isinstance(customer, str) or not isinstance(currency, str) or not customer:
        return None
    if kind == "invoice.paid":
        amount = obj.get("amount_paid")
        email = obj.get("customer_email")
    else:
        # amount_refunded is the charge's running total: this event refunded what it grew by.
        before = dig(event, ("data", "previous_attributes", "amount_refunded"))
        now = obj.get("amount_refunded")
        amount = -(now - before) if isinstance(now, int) and isinstance(before, int) else None
        if amount is None and isinstance(now, int):
            amount = -now
        email = dig(obj, ("billing_details", "email")) or obj.get("receipt_email")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        return None
    return Spent(str(event["id"]), customer, currency.upper(), amount,
                 email if isinstance(email, str) else "")  # fmt: skip

"""The console's Customers page (`/admin/customers`): for Stripe hooks with `tier_for_spend`,
each Stripe customer's total spend per currency, the tier the relay gave their pass and when.

Customers are listed by their Stripe customer id; their name comes from the delivery log's own
sentence about their latest Stripe event, when the log kept one (the ledger stores no names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from relay.admin.sentences import describe
from relay.admin.session import Session
from relay.forms.spend_tiers import money
from relay.passkit.operations import dig
from relay.store import DeliveryRecord
from relay.store.spend import CustomerSpend
from relay.ui.html import when

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

SHOWN = 200
NAMES_FROM = 500  # the newest Stripe deliveries read for names


def _day(at: float | None) -> str:
    return when(at) if at else ""  # the console's one date format


def customer_of(record: DeliveryRecord) -> str:
    """The Stripe customer id of a Stripe delivery's event ("" when it names none)."""
    found = dig(record.request, ("data", "object", "customer"))
    if isinstance(found, dict):
        found = found.get("id")
    return found if isinstance(found, str) else ""


def names_from(records: list[DeliveryRecord]) -> dict[str, str]:
    """Customer id → who the newest delivery about them names ("Ana Díaz"), from the delivery
    log's sentences; customers the log names only by id are left out."""
    names: dict[str, str] = {}
    for record in records:  # newest first: the first name found wins
        customer = customer_of(record)
        if not customer or customer in names:
            continue
        who = describe(record).who
        who = who.removesuffix(f" ({customer})")
        if who and who != customer and who != "a member":
            names[customer] = who
    return names


def row(spend: CustomerSpend, name: str) -> dict[str, Any]:
    totals = [money(total, currency) for currency, total in sorted(spend.totals.items())]
    tier = f"{spend.tier}, since {_day(spend.changed_at)}" if spend.tier else "No tier given yet"
    return {"customer": spend.customer, "name": name, "totals": totals, "tier": tier,
            "last": _day(spend.last_at)}  # fmt: skip


class CustomersPage:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console

    def routes(self) -> list[BaseRoute]:
        r, guarded = self.console.root, self.console.guarded
        return [Route(f"{r}/customers", guarded(self.customers), methods=["GET"])]

    async def customers(self, request: Request, session: Session) -> Response:
        store = await self.console.store()
        listed = await store.spend_customers(SHOWN)
        names = names_from(await store.list_deliveries(source="stripe", limit=NAMES_FROM))
        rows = [row(c, names.get(c.customer, "")) for c in listed]
        return self.console.render("customers.html", session, "customers", title="Customers",
                                   rows=rows)  # fmt: skip

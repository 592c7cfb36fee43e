"""The spend ledger (migration 10): what each Stripe customer has paid, for tiers from spend
(relay.stripe.spend).

`spend_entries` holds one row per counted Stripe event, keyed by the event's id: an insert that
conflicts (Stripe's retry, or another process with the same event) counts nothing, so a total
is the plain sum of a customer's rows. `spend_tiers` holds the tier the relay last gave each
customer's pass and when. Both are keyed by Stripe's customer id; `person` is a blind index
(relay.sealing) of the customer's email, so `relay erase` finds the rows; no email or name is
kept in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.store.queries import Statements

ADD = (
    "INSERT INTO spend_entries (event_id, customer, person, currency, amount, at) "
    "VALUES (:event_id, :customer, :person, :currency, :amount, :at) "
    "ON CONFLICT (event_id) DO NOTHING"
)
TOTALS = (
    "SELECT currency, SUM(amount), MAX(at) FROM spend_entries WHERE customer = :customer "
    "GROUP BY currency"
)
TIER = "SELECT tier, changed_at FROM spend_tiers WHERE customer = :customer"
SET_TIER = (
    "INSERT INTO spend_tiers (customer, person, tier, changed_at) "
    "VALUES (:customer, :person, :tier, :at) ON CONFLICT (customer) DO UPDATE "
    "SET person = :person, tier = :tier, changed_at = :at"
)
# The customers most recently paid or refunded first, with their tier if the relay set one.
CUSTOMERS = (
    "SELECT e.customer, e.currency, SUM(e.amount), MAX(e.at), t.tier, t.changed_at "
    "FROM spend_entries e LEFT JOIN spend_tiers t ON t.customer = e.customer "
    "WHERE e.customer IN (SELECT customer FROM spend_entries GROUP BY customer "
    "ORDER BY MAX(at) DESC LIMIT :limit) "
    "GROUP BY e.customer, e.currency, t.tier, t.changed_at"
)
CUSTOMERS_OF = (
    "SELECT customer FROM spend_entries WHERE person = :person "
    "UNION SELECT customer FROM spend_tiers WHERE person = :person"
)
ERASE_ENTRIES = "DELETE FROM spend_entries WHERE customer = :customer"
ERASE_TIER = "DELETE FROM spend_tiers WHERE customer = :customer"


@dataclass(frozen=True)
class SpendEntry:
    event_id: str
    customer: str
    person: str
    currency: str
    amount: int  # Stripe's units; negative for a refund
    at: float


@dataclass(frozen=True)
class CustomerSpend:
    """One customer's ledger: the total per currency (Stripe's units), the tier the relay
    last gave their pass and when, and when they last paid or were refunded."""

    customer: str
    totals: dict[str, int] = field(default_factory=dict)
    tier: str | None = None
    changed_at: float | None = None
    last_at: float | None = None


class SpendLedger(Statements):
    """The ledger's statements over a backend's read and write primitives (SQLStore's)."""

    async def add_spend(self, entry: SpendEntry) -> bool:
        """Count one event; False when it was counted before (nothing changes then)."""
        changed, _ = await self._write(ADD, {
            "event_id": entry.event_id, "customer": entry.customer, "person": entry.person,
            "currency": entry.currency, "amount": entry.amount, "at": entry.at,
        })  # fmt: skip
        return changed == 1

    async def spend_of(self, customer: str) -> CustomerSpend:
        totals = await self._read(TOTALS, {"customer": customer})
        tier = await self._read(TIER, {"customer": customer})
        return CustomerSpend(
            customer,
            {str(currency): int(total) for currency, total, _ in totals},
            tier[0][0] if tier else None,
            tier[0][1] if tier else None,
            max((at for _, _, at in totals), default=None),
        )

    async def set_spend_tier(self, customer: str, person: str, tier: str, at: float) -> None:
        await self._write(SET_TIER, {"customer": customer, "person": person, "tier": tier,
                                     "at": at})  # fmt: skip

    async def spend_customers(self, limit: int = 200) -> list[CustomerSpend]:
        """The customers who paid or were refunded last, newest first."""
        found: dict[str, CustomerSpend] = {}
        for customer, currency, total, at, tier, changed_at in await self._read(
            CUSTOMERS, {"limit": limit}
        ):
            seen = found.setdefault(customer, CustomerSpend(customer, {}, tier, changed_at, at))
            seen.totals[str(currency)] = int(total)
            if at > (seen.last_at or 0):
                found[customer] = CustomerSpend(customer, seen.totals, tier, changed_at, at)
        return sorted(found.values(), key=lambda c: c.last_at or 0, reverse=True)

    async def erase_spend(self, person_blinds: Sequence[str]) -> int:
        """Delete the ledger of every customer one of `person_blinds` paid as (all of that
        customer's rows, also those without an email); how many rows."""
        customers: set[str] = set()
        for blind in dict.fromkeys(person_blinds):
            customers |= {row[0] for row in await self._read(CUSTOMERS_OF, {"person": blind})}
        deleted = 0
        for customer in sorted(customers):
            for statement in (ERASE_ENTRIES, ERASE_TIER):
                changed, _ = await self._write(statement, {"customer": customer})
                deleted += changed
        return deleted

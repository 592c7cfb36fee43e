"""Tiers from cumulative spend: a Stripe hook with `tier_for_spend` keeps a ledger of what each
customer paid (`invoice.paid` adds `amount_paid`, `charge.refunded` takes off what was refunded)
and moves their pass's tier when the total crosses a threshold: up always, down only with
`tier_down=yes`.

Each event is counted once, by its id (relay.store.spend), also when Stripe retries it or two
processes get it. What to do is worked out from the ledger after counting, so a retry after
PassKit failed reaches the same decision and sends the move again. The move itself is the
Stripe template's ordinary PassKit request: `spend.tier` in its context is the tier to set now
(None when the pass stays where it is, `spend.note` says why). The tier is remembered only
once PassKit took it.

A customer pays in one currency: a payment in another is refused (not summed, not converted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import HookMisconfigured, RelayError
from relay.forms.spend_tiers import major, money, parse_spend_tiers, rank, tier_for
from relay.store.handle import StoreHandle
from relay.store.spend import SpendEntry
from relay.stripe.spent import Spent, spent_by


class MixedCurrency(RelayError):
    status = 422
    code = "mixed_currency"
    default_hint = (
        "Tiers from spend add up one currency per customer. Charge this customer in the "
        "currency they paid in before, or set their tier in PassKit by hand."
    )


@dataclass(frozen=True)
class Movement:
    """What one event did to a customer's spend, and what becomes of their pass's tier."""

    spent: Spent
    person: str  # blind index of their email (or of the customer id when Stripe sent none)
    total: int  # after this event, in Stripe's units
    tier: str | None  # the tier to give the pass now; None: it stays
    current: str | None  # the tier the relay last gave it
    note: str  # in words: why the tier moves or stays

    def context(self) -> dict[str, Any]:
        """What a Stripe template sees as `spend`."""
        return {"tier": self.tier, "previous_tier": self.current, "note": self.note,
                "total": str(major(self.total, self.spent.currency)),
                "currency": self.spent.currency}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The answer's `spend`: the total and the tier, no person."""
        return {"customer": self.spent.customer, "total": money(self.total, self.spent.currency),
                "tier": self.tier or self.current}  # fmt: skip


def decide(
    spent: Spent, total: int, current: str | None, tiers_text: str, tier_down: bool
) -> tuple[str | None, str]:
    """(the tier to set now or None, why) for a customer at `total` whose pass is `current`."""
    thresholds = parse_spend_tiers(tiers_text)
    target = tier_for(major(total, spent.currency), thresholds)
    spent_words = f"{money(total, spent.currency)} spent in all"
    if target is None:
        return None, f"{spent_words} is below the lowest tier in tier_for_spend"
    if target == current:
        return None, f"{spent_words}: the pass stays {current}"
    if current is None or rank(target, thresholds) > rank(current, thresholds):
        return target, f"{spent_words}: the pass moves up to {target}"
    if tier_down:
        return target, f"{spent_words}: the pass moves down to {target} (tier_down is yes)"
    return None, (f"{spent_words} is below {current}'s threshold, but the pass stays {current}: "
                  "tiers move down only with tier_down=yes")  # fmt: skip


class SpendTiers:
    def __init__(
        self, store: StoreHandle, blind: Callable[[str], str], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.blind = blind
        self.clock = clock

    async def count(self, params: Mapping[str, str], event: Mapping[str, Any]) -> Movement | None:
        """Count `event` in its customer's spend when the hook has `tier_for_spend` and the
        event is a payment or refund; the movement it makes. MixedCurrency when the customer
        paid in another currency before (nothing is counted then)."""
        tiers_text = params.get("tier_for_spend", "")
        spent = spent_by(event) if tiers_text else None
        if spent is None:
            return None
        try:
            parse_spend_tiers(tiers_text)
        except ValueError as exc:  # minted before the check, or by hand
            raise HookMisconfigured("tier_for_spend", f"tier_for_spend {exc}") from None
        store = await self.store.get()
        before = await store.spend_of(spent.customer)
        # Two processes counting two currencies at the same instant could both get past this
        # check; Stripe sends one customer's payments one at a time, so it is not locked.
        others = sorted(set(before.totals) - {spent.currency})
        if others:
            raise MixedCurrency(
                f"Stripe customer {spent.customer} has paid in {others[0]} before; this "
                f"{spent.currency} payment is not added to their spend: tier_for_spend adds up "
                "one currency per customer."
            )
        person = self.blind(spent.email or spent.customer)
        await store.add_spend(SpendEntry(spent.event_id, spent.customer, person,
                                         spent.currency, spent.amount, self.clock()))  # fmt: skip
        after = await store.spend_of(spent.customer)
        total = after.totals.get(spent.currency, 0)
        tier_down = params.get("tier_down", "no").strip().lower() == "yes"
        tier, note = decide(spent, total, after.tier, tiers_text, tier_down)
        return Movement(spent, person, total, tier, after.tier, note)

    async def settled(self, movement: Movement, answer: dict[str, Any]) -> None:
        """Remember the tier PassKit now has (only when the request went through), and add
        the spend to the answer."""
        answer["spend"] = movement.summary()
        done = answer.get("ok") and not any(
            answer.get(k) for k in ("skipped", "ignored", "dry_run")
        )
        if movement.tier and done:
            store = await self.store.get()
            await store.set_spend_tier(movement.spent.customer, movement.person, movement.tier,
                                       self.clock())  # fmt: skip

"""A hook's `tier_for_spend` setting and Stripe's money amounts, as values (no I/O). The
setting is read by templating's params like any other; relay.stripe.spend applies it.

    tier_for_spend = "0=base,100=silver,500=gold"   # in the major unit of the currency

Stripe sends amounts in the currency's minor unit (cents), except the zero-decimal currencies
(JPY, KRW …), whose amounts are already whole yen or won, and the three-decimal ones (KWD …),
counted in thousandths (Stripe's "Supported currencies" page).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF",
                          "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})  # fmt: skip
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def minor_units(currency: str) -> int:
    """How many of Stripe's amount units make one of `currency`'s major unit."""
    code = currency.upper()
    return 1 if code in ZERO_DECIMAL else 1000 if code in THREE_DECIMAL else 100


def major(amount: int, currency: str) -> Decimal:
    """Stripe's `amount` (minor units) in the currency's major unit: 6000 GBP → 60.00."""
    units = minor_units(currency)
    places = {1: Decimal(1), 100: Decimal("0.01"), 1000: Decimal("0.001")}[units]
    return (Decimal(amount) / units).quantize(places)


def money(amount: int, currency: str) -> str:
    """An amount in words for the console and the log: "110.00 EUR", "5000 JPY"."""
    return f"{major(amount, currency):,} {currency.upper()}"


@dataclass(frozen=True)
class Threshold:
    amount: Decimal  # from this total (major unit) on, the customer is in `tier`
    tier: str


def parse_spend_tiers(text: str) -> list[Threshold]:
    """`0=base,100=silver` as thresholds, lowest first; ValueError saying what is wrong, as
    the end of a sentence naming the param."""
    wanted = "must be amount=tier pairs separated by commas, such as 0=base,100=silver,500=gold"
    found: dict[Decimal, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        amount, sep, tier = (s.strip() for s in part.partition("="))
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise ValueError(wanted) from None
        if not sep or not tier or " " in tier or "=" in tier or not value.is_finite():
            raise ValueError(wanted)
        if value < 0:
            raise ValueError(f"has a negative amount ({amount}): amounts are what was spent")
        if value in found:
            raise ValueError(f"names the amount {amount} twice")
        found[value] = tier.lower()
    if not found:
        raise ValueError(wanted)
    return [Threshold(a, t) for a, t in sorted(found.items())]


def spend_tiers_text(thresholds: list[Threshold]) -> str:
    """The thresholds as a hook stores them: `0=base,100=silver,500=gold`."""
    return ",".join(f"{t.amount.normalize():f}={t.tier}" for t in thresholds)


def tier_for(total: Decimal, thresholds: list[Threshold]) -> str | None:
    """The tier of the highest threshold `total` reaches; None below the lowest."""
    reached = [t.tier for t in thresholds if total >= t.amount]
    return reached[-1] if reached else None


def rank(tier: str | None, thresholds: list[Threshold]) -> int:
    """A tier's place among the thresholds (-1 for none or a tier they do not name)."""
    names = [t.tier for t in thresholds]
    return names.index(tier) if tier in names else -1

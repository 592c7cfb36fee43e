"""A sample event for a PassKit events URL, so a Zapier Catch Hook or a Make webhook learns its
fields while the zap is being built, before PassKit sends anything.

The sample is made the way a real event is: a PassKit payload of the event's family (a
membership pass for pass and member events, a coupon for coupon events) through
relay.events.flatten with the URL's own rules, so it has every key a real event of that family
has and nothing else, then `sample: true`. The custom fields (`meta_*`) are those of the last
real event the URL received when there is one (their values too: a builder maps what they will
get), else one example field. It goes into the outbox like a real event and is forwarded by the
same worker (relay.events.forwarder), so it meets the same outbound checks and retries; its id
starts `smp_`, which keeps it out of "the last real event".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.events.flatten import (
    ALL_EVENT_NAMES,
    EVENT_NAMES,
    EVENTS,
    FAMILY_EVENTS,
    Flat,
    chosen_events,
    flatten,
    short_name,
)
from relay.events.params import every_family
from relay.ids import unique_hex
from relay.store import PassKitEvent, Store

NAMES = {short: long for long, short in (EVENTS | FAMILY_EVENTS).items()}


class NotASampleEvent(ValueError):
    """The event asked for is not one this URL forwards; `str()` says which it does."""


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def payload(event: str, at: float) -> dict[str, Any]:
    """A PassKit SinkSubscriptionPayload for `event` as a real one of its family looks."""
    when = _iso(at)
    coupon = event.startswith("coupon.")
    record = {"person.emailAddress": "sample@example.com", "person.forename": "Sam",
              "person.surname": "Sample", "person.displayName": "Sam Sample",
              "person.mobileNumber": "+447700900123", "pass.passUrl":
              "https://pub1.pskt.io/sample-pass-id"}  # fmt: skip
    if not coupon:
        record |= {"members.member.externalId": "SAMPLE-1", "members.program.id": "sample-program",
                   "members.tier.id": "base", "members.tier.name": "Base",
                   "members.member.points": "120", "members.member.secondaryPoints": "0",
                   "members.member.tierPoints": "40", "members.member.status": "ACTIVE",
                   "members.member.metaData.favouriteClass": "Spin"}  # fmt: skip
    else:
        record |= {"coupons.coupon.metaData.favouriteClass": "Spin"}
    return {"event": NAMES.get(event, event), "pass": {
        "id": "sample-pass-id", "classId": "sample-campaign" if coupon else "sample-program",
        "protocol": "SINGLE_USE_COUPON" if coupon else "MEMBERSHIP",
        "externalId": "SAMPLE-1",
        "personDetails": {"forename": "Sam", "surname": "Sample", "displayName": "Sam Sample",
                          "emailAddress": "sample@example.com", "mobileNumber": "+447700900123"},
        "metadata": {"status": "PASS_INSTALLED", "firstInstalledAt": when,
                     "lastInstalledAt": when, "lastUninstalledAt": when,
                     "lifecycleEvents": ["RENDERED", "INSTALLED_APPLE"]},
        "recordData": record,
    }}  # fmt: skip


def sample(event: str, params: Any, at: float, last_real: Flat | None = None) -> Flat:
    """The flat sample of `event` for a URL with `params`; NotASampleEvent if it forwards none
    such. `last_real`: the body of the URL's last real event, whose meta_* keys it copies."""
    typed = every_family(params)
    allowed = ALL_EVENT_NAMES if typed else EVENT_NAMES
    wanted = [e for e in chosen_events(str(params.get("events") or "")) if e in allowed]
    wanted = wanted or list(allowed)
    event = short_name(event)
    if event not in wanted:
        raise NotASampleEvent(f"this URL forwards {', '.join(wanted)}; choose one of them")
    ident = "smp_" + unique_hex(12)
    flat = flatten(payload(event, at), event_id=ident, received_at=_iso(at), typed=typed)
    if last_real:
        flat = {k: v for k, v in flat.items() if not k.startswith("meta_")}
        flat |= {k: v for k, v in last_real.items() if k.startswith("meta_")}
    flat["sample"] = True
    return flat


async def send_sample(
    store: Store, hook_id: str, params: Any, event: str, at: float
) -> PassKitEvent:
    """Put a sample of `event` in the outbox for the URL's `forward_to`; the event stored."""
    last = await store.last_real_event(hook_id)
    flat = sample(event, params, at, last.body if last else None)
    record = PassKitEvent(flat["event_id"], hook_id, flat["event"], at, str(params["forward_to"]),
                          flat)  # fmt: skip
    await store.enqueue_event(record)
    return record

"""A PassKit webhook event, flattened into the keys a Zapier or Make step maps.

PassKit sends `{"event": "PASS_EVENT_INSTALLED", "pass": {id, classId, protocol, externalId,
personDetails{…}, metadata{…}, recordData{"members.member.points": …, "person.emailAddress": …}}}`
(its SinkSubscriptionPayload; reference/passkit-api.md §8). Shapes beyond that are not
documented, so everything is read defensively: the event as a name or PassEventId number, the
protocol as a name or number, person fields from `personDetails` or `recordData`. A zap sees:

    event, event_id, received_at, pass_id, external_id, protocol, program_id (campaign_id,
    production_id), tier, tier_name, email, first_name, last_name, display_name, mobile, points,
    secondary_points, tier_points, status, pass_url, installed_at, uninstalled_at, meta_<name>
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# PassKit's PassEventId, by name and number; the short name is what `events=` and zaps use.
EVENTS: dict[str, str] = {
    "PASS_EVENT_RECORD_CREATED": "created",
    "PASS_EVENT_INSTALLED": "installed",
    "PASS_EVENT_RECORD_UPDATED": "updated",
    "PASS_EVENT_UNINSTALLED": "uninstalled",
    "PASS_EVENT_INVALIDATED": "invalidated",
    "PASS_EVENT_RECORD_DELETED": "deleted",
}
EVENT_NUMBERS = {1: "created", 2: "installed", 4: "updated", 8: "uninstalled",
                 16: "invalidated", 32: "deleted"}  # fmt: skip
EVENT_NAMES = tuple(EVENT_NUMBERS.values())
PROTOCOLS = {"MEMBERSHIP": "membership", "SINGLE_USE_COUPON": "coupon",
             "EVENT_TICKETING": "event_ticket", 100: "membership", 101: "coupon",
             102: "event_ticket"}  # fmt: skip
# The id a pass's class is, by protocol: a zap maps program_id for members, and so on.
CLASS_KEY = {"membership": "program_id", "coupon": "campaign_id", "event_ticket": "production_id"}
RECORD_KEYS = {
    "members.member.externalId": "external_id",
    "members.program.id": "program_id",
    "members.tier.id": "tier",
    "members.tier.name": "tier_name",
    "members.member.points": "points",
    "members.member.secondaryPoints": "secondary_points",
    "members.member.tierPoints": "tier_points",
    "members.member.status": "status",
    "person.emailAddress": "email",
    "person.forename": "first_name",
    "person.surname": "last_name",
    "person.displayName": "display_name",
    "person.mobileNumber": "mobile",
    "pass.passUrl": "pass_url",
}
PERSON_KEYS = {"emailAddress": "email", "forename": "first_name", "surname": "last_name",
               "displayName": "display_name", "mobileNumber": "mobile"}  # fmt: skip
_META_IN_RECORD = re.compile(r"^[a-z]+\.[a-z]+\.metaData\.(.+)$")
_NOT_A_KEY = re.compile(r"[^0-9a-zA-Z]+")


class NotAnEvent(ValueError):
    """The signed body is not a PassKit pass event; `str()` says why, in words."""


def event_name(raw: Any, method: str = "POST") -> str:
    """`installed` for `PASS_EVENT_INSTALLED`, 2 or `pass.installed`; DELETE without a name is
    `deleted`. An unknown name is kept, lower-cased, so a new PassKit event still flows."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return EVENT_NUMBERS.get(raw, f"event_{raw}")
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if text.isdigit():
            return event_name(int(text))
        if text.upper() in EVENTS:
            return EVENTS[text.upper()]
        short = text.lower().removeprefix("pass.").removeprefix("pass_event_")
        return short.removeprefix("record_") if short.startswith("record_") else short
    if method.upper() == "DELETE":
        return "deleted"
    raise NotAnEvent("The signed body names no event (no `event` field).")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _key(name: str) -> str:
    return _NOT_A_KEY.sub("_", name).strip("_")


def flatten(event: Any, *, event_id: str, received_at: str, method: str = "POST") -> dict[str, str]:
    """The flat record forwarded to Zapier or Make; NotAnEvent if `event` is not one."""
    if not isinstance(event, dict):
        raise NotAnEvent("The signed body is not a JSON object.")
    pass_ = event.get("pass")
    if pass_ is None and isinstance(event.get("data"), dict):
        pass_ = event["data"]
    if not isinstance(pass_, dict):
        raise NotAnEvent("The signed body has no pass (no `pass` object).")
    flat: dict[str, str] = {"event": event_name(event.get("event"), method),
                            "event_id": event_id, "received_at": received_at}  # fmt: skip

    def put(key: str, value: Any) -> None:
        text = _text(value)
        if text is not None and key not in flat:
            flat[key] = text

    put("pass_id", pass_.get("id"))
    put("external_id", pass_.get("externalId"))
    protocol = pass_.get("protocol")
    kind = PROTOCOLS.get(protocol.upper() if isinstance(protocol, str) else protocol)
    put("protocol", kind or protocol)
    person = pass_.get("personDetails") or pass_.get("person")
    for name, key in PERSON_KEYS.items():
        put(key, person.get(name) if isinstance(person, dict) else None)
    record = pass_.get("recordData")
    record = record if isinstance(record, dict) else {}
    for name, key in RECORD_KEYS.items():
        put(key, record.get(name))
    put(CLASS_KEY.get(kind or "", "program_id"), pass_.get("classId"))
    put("tier", pass_.get("tierId"))
    put("pass_url", pass_.get("passUrl"))
    metadata = pass_.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    put("installed_at", metadata.get("firstInstalledAt"))
    put("uninstalled_at", metadata.get("lastUninstalledAt"))
    metas: dict[str, Any] = {}
    for source in (pass_.get("metaData"), metadata.get("metaData")):
        if isinstance(source, dict):
            metas.update(source)
    for name, value in record.items():
        if isinstance(name, str) and (match := _META_IN_RECORD.match(name)):
            metas.setdefault(match.group(1), value)
    for name, value in metas.items():
        if key := _key(str(name)):
            put(f"meta_{key}", value)
    return flat


def chosen_events(events: str) -> list[str]:
    """The short names an `events=` param lists: comma-separated, any case; none means all."""
    return [part.strip().lower() for part in events.split(",") if part.strip()]


def wanted(flat: Mapping[str, str], events: str) -> bool:
    """Whether the hook's `events=` param takes it."""
    chosen = chosen_events(events)
    return not chosen or flat.get("event", "") in chosen


def person(flat: Mapping[str, str]) -> str:
    """Who the event is about, for a console sentence: a name, else an email or external id."""
    name = flat.get("display_name") or " ".join(
        part for part in (flat.get("first_name"), flat.get("last_name")) if part
    )
    return name or flat.get("email") or flat.get("external_id") or "a pass holder"


VERBS = {"created": "Pass issued to", "installed": "Pass installed by",
         "uninstalled": "Pass removed by", "updated": "Pass updated for",
         "deleted": "Pass deleted for", "invalidated": "Pass invalidated for"}  # fmt: skip


def sentence(flat: Mapping[str, str]) -> str:
    """ "Pass installed by Mara Quist": what happened, in words."""
    verb = VERBS.get(flat.get("event", ""), f"PassKit event “{flat.get('event', '?')}” for")
    return f"{verb} {person(flat)}"

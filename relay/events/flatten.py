"""A PassKit webhook event, flattened into the keys a Zapier or Make step maps.

PassKit sends `{"event": "PASS_EVENT_INSTALLED", "pass": {id, classId, protocol, externalId,
personDetails{…}, metadata{…}, recordData{"members.member.points": …, "person.emailAddress": …}}}`
(its SinkSubscriptionPayload; reference/passkit-api.md §8). Shapes beyond that are not
documented, so everything is read defensively: the event as a name or PassEventId number, the
protocol as a name or number, person fields from `personDetails` or `recordData`. A zap sees:

    event, event_id, received_at, pass_id, external_id, protocol, program_id (campaign_id,
    production_id), tier, tier_name, email, first_name, last_name, display_name, mobile, points,
    secondary_points, tier_points, status, pass_url, installed_at, uninstalled_at, meta_<name>

Every PassKit event family comes in that one payload (its SDK defines no other): pass events
(PassEventId), membership events (MembershipEventId: MEMBER_EVENT_ENROLLED, …_UPDATED) and coupon
events (CouponEventId: COUPON_EVENT_CREATED, …_REDEEMED, …_UPDATED, …_DELETED). Their numbers
collide across families (MEMBER_EVENT_ENROLLED and PASS_EVENT_RECORD_CREATED are both 1), so
membership and coupon events are known by name only, and called `member.enrolled`,
`coupon.redeemed` …; a bare number is read as a pass event, as before. Added beside the keys
above (none of them changed): pass_status, wallet, last_installed_at and `sample` (false: a
real event; relay.events.sample sends true). URLs minted from now on (params `v=2`,
relay.events.params) also get points as numbers, not text, and every family; URLs minted
before get the six pass events only, their numbers as text.
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
# PassKit's MembershipEventId and CouponEventId (passkit/io/common/integration.proto), by name:
# their numbers (1, 2, 4, 8) are PassEventId's too.
FAMILY_EVENTS: dict[str, str] = {
    "MEMBER_EVENT_ENROLLED": "member.enrolled",
    "MEMBER_EVENT_UPDATED": "member.updated",
    "COUPON_EVENT_CREATED": "coupon.created",
    "COUPON_EVENT_REDEEMED": "coupon.redeemed",
    "COUPON_EVENT_UPDATED": "coupon.updated",
    "COUPON_EVENT_DELETED": "coupon.deleted",
}
ALL_EVENT_NAMES = EVENT_NAMES + tuple(FAMILY_EVENTS.values())
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
NUMBER_KEYS = ("points", "secondary_points", "tier_points")  # numbers, for URLs minted from v2
PERSON_KEYS = {"emailAddress": "email", "forename": "first_name", "surname": "last_name",
               "displayName": "display_name", "mobileNumber": "mobile"}  # fmt: skip
# Custom fields in recordData, in every form PassKit's templates name them: `meta.<name>`
# (the template editor's field key), `<protocol>.<entity>.metaData.<name>` (the record's
# metaData map), `metaData.<name>`.
_META_IN_RECORD = re.compile(r"^(?:[A-Za-z_]+\.)*(?:meta|metaData)\.(.+)$")
_NOT_A_KEY = re.compile(r"[^0-9a-zA-Z]+")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Metadata.status (io.Status) and the wallet a lifecycle event or device attribute names.
PASS_STATUSES = {"PASS_ISSUED": "issued", "PASS_INSTALLED": "installed",
                 "PASS_UNINSTALLED": "uninstalled", "PASS_INVALIDATED": "invalidated",
                 0: "issued", 1: "installed", 2: "uninstalled", 3: "invalidated"}  # fmt: skip
INSTALLS = {"INSTALLED_APPLE": "Apple", "INSTALLED_GOOGLE": "Google",
            "INSTALLED_ANDROID_OTHER": "Android (other)", 2: "Apple", 4: "Google",
            8: "Android (other)"}  # io.LifecycleEvents  # fmt: skip
DEVICES = {"Ios": "Apple", "Android": "Google", 1: "Apple", 2: "Google"}  # io.DeviceAttributes


class NotAnEvent(ValueError):
    """The signed body is not a PassKit pass event; `str()` says why, in words."""


def event_name(raw: Any, method: str = "POST") -> str:
    """`installed` for `PASS_EVENT_INSTALLED`, 2 or `pass.installed`; `member.enrolled` for
    MEMBER_EVENT_ENROLLED; DELETE without a name is `deleted`. An unknown name is kept,
    lower-cased, so a new PassKit event still flows."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return EVENT_NUMBERS.get(raw, f"event_{raw}")
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if text.isdigit():
            return event_name(int(text))
        if text.upper() in EVENTS:
            return EVENTS[text.upper()]
        if text.upper() in FAMILY_EVENTS:
            return FAMILY_EVENTS[text.upper()]
        return short_name(text)
    if method.upper() == "DELETE":
        return "deleted"
    raise NotAnEvent("The signed body names no event (no `event` field).")


def short_name(text: str) -> str:
    """An event as `events=` may list it: `pass.installed` is `installed`, `member_enrolled`
    is `member.enrolled`; other names lower-cased."""
    short = text.strip().lower().removeprefix("pass.").removeprefix("pass_event_")
    for family in ("member", "coupon"):
        for prefix in (f"{family}_event_", f"{family}_"):
            named = f"{family}.{short.removeprefix(prefix)}"
            if short.startswith(prefix) and named in ALL_EVENT_NAMES:
                return named
    return short.removeprefix("record_") if short.startswith("record_") else short


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _number(text: str) -> int | float | str:
    if not _NUMBER.match(text):
        return text
    return float(text) if "." in text else int(text)


def _key(name: str) -> str:
    return _NOT_A_KEY.sub("_", name).strip("_")


def _wallet(metadata: Mapping[str, Any]) -> str | None:
    """Apple or Google: the last install in `lifecycleEvents`, else the install device."""
    events = metadata.get("lifecycleEvents")
    for each in reversed(events if isinstance(events, list) else []):
        if isinstance(each, (str, int)) and not isinstance(each, bool) and each in INSTALLS:
            return INSTALLS[each]
    device = metadata.get("installDeviceAttributes")
    for each in device if isinstance(device, list) else []:
        if isinstance(each, (str, int)) and not isinstance(each, bool) and each in DEVICES:
            return DEVICES[each]
    return None


Flat = dict[str, Any]


def flatten(
    event: Any, *, event_id: str, received_at: str, method: str = "POST", typed: bool = False
) -> Flat:
    """The flat record forwarded to Zapier or Make; NotAnEvent if `event` is not one.

    `typed` (URLs minted from v2): points as numbers, and a body without `pass` that names an
    event is forwarded with its top-level keys rather than refused."""
    if not isinstance(event, dict):
        raise NotAnEvent("The signed body is not a JSON object.")
    pass_ = event.get("pass")
    if pass_ is None and isinstance(event.get("data"), dict):
        pass_ = event["data"]
    name = event_name(event.get("event"), method)
    if not isinstance(pass_, dict):
        if not typed or event.get("event") is None:
            raise NotAnEvent("The signed body has no pass (no `pass` object).")
        pass_ = {}
    flat: Flat = {"event": name, "event_id": event_id, "received_at": received_at}

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
    for field, key in PERSON_KEYS.items():
        put(key, person.get(field) if isinstance(person, dict) else None)
    record = pass_.get("recordData")
    record = record if isinstance(record, dict) else {}
    for field, key in RECORD_KEYS.items():
        put(key, record.get(field))
    put(CLASS_KEY.get(kind or "", "program_id"), pass_.get("classId"))
    put("tier", pass_.get("tierId"))
    put("pass_url", pass_.get("passUrl"))
    metadata = pass_.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    put("installed_at", metadata.get("firstInstalledAt"))
    put("uninstalled_at", metadata.get("lastUninstalledAt"))
    put("last_installed_at", metadata.get("lastInstalledAt"))
    status = metadata.get("status")
    if isinstance(status, (str, int)):
        put("pass_status", PASS_STATUSES.get(status, status))
    put("wallet", _wallet(metadata))
    metas: dict[str, Any] = {}
    for source in (pass_.get("metaData"), metadata.get("metaData")):
        if isinstance(source, dict):
            metas.update(source)
    for field, value in record.items():
        if isinstance(field, str) and (match := _META_IN_RECORD.match(field)):
            metas.setdefault(match.group(1), value)
    for field, value in metas.items():
        if key := _key(str(field)):
            put(f"meta_{key}", value)
    if typed:
        if name not in ALL_EVENT_NAMES:  # an event the relay does not know: its own keys too
            for field, value in event.items():
                if field not in ("event", "pass", "data") and (key := _key(str(field))):
                    put(key, value)
        for key in NUMBER_KEYS:
            if isinstance(flat.get(key), str):
                flat[key] = _number(flat[key])
    flat["sample"] = False
    return flat


def chosen_events(events: str) -> list[str]:
    """The short names an `events=` param lists: comma-separated, any case; none means all."""
    return [short_name(part) for part in events.split(",") if part.strip()]


def wanted(flat: Mapping[str, Any], events: str, *, every_family: bool = False) -> bool:
    """Whether the hook's `events=` param takes it. Without `every_family` (a URL minted before
    v2) only the six pass events are."""
    event = str(flat.get("event", ""))
    if not every_family and event not in EVENT_NAMES:
        return False
    chosen = chosen_events(events)
    return not chosen or event in chosen


def person(flat: Mapping[str, Any]) -> str:
    """Who the event is about, for a console sentence: a name, else an email or external id."""
    name = flat.get("display_name") or " ".join(
        part for part in (flat.get("first_name"), flat.get("last_name")) if part
    )
    return str(name or flat.get("email") or flat.get("external_id") or "a pass holder")


VERBS = {"created": "Pass issued to", "installed": "Pass installed by",
         "uninstalled": "Pass removed by", "updated": "Pass updated for",
         "deleted": "Pass deleted for", "invalidated": "Pass invalidated for",
         "member.enrolled": "Member enrolled:", "member.updated": "Member updated:",
         "coupon.created": "Coupon issued to", "coupon.redeemed": "Coupon redeemed by",
         "coupon.updated": "Coupon updated for",
         "coupon.deleted": "Coupon deleted for"}  # fmt: skip


def sentence(flat: Mapping[str, Any]) -> str:
    """ "Pass installed by Mara Quist": what happened, in words; a sample says so."""
    verb = VERBS.get(flat.get("event", ""), f"PassKit event “{flat.get('event', '?')}” for")
    said = f"{verb} {person(flat)}"
    return f"Sample: {said}" if flat.get("sample") is True else said

"""What a PassKit events URL (`/passkit/{token}`) takes when it is minted: `forward_to`, the
Zapier or Make URL its events go to, and `events`, which of them. Read by relay.hooks.minting, so
`relay url passkit-events` and the console's New hook form offer and check it as they do a
template's params.

Minting adds `v=2` (VERSION): a URL carrying it takes every PassKit event family (membership and
coupon events, events the relay does not know yet) and gets points as numbers; a URL minted
before it keeps what it did, the six pass events with their numbers as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from relay.access.tokens import VERSION_PARAM
from relay.access.urlguard import UrlGuard
from relay.delivery.templating import ParamSpec
from relay.events.flatten import ALL_EVENT_NAMES, chosen_events

TEMPLATE = "passkit-events"  # what the URL's token names as its template
KIND = "passkit"  # the URL's path segment
VERSION = (VERSION_PARAM, "2")  # the param minting adds (see above): the first version to take them
TITLE = "Send pass events (added to a wallet, removed …) to Zapier or Make"
SUMMARY = "PassKit events: passes created, installed, removed … forwarded to Zapier or Make"
PARAMS = {
    "forward_to": ParamSpec(
        "forward_to",
        "the URL of a Zapier “Catch Hook” trigger or a Make custom webhook",
        example="https://hooks.zapier.com/hooks/catch/123456/abcdef/",
    ),
    "events": ParamSpec(
        "events",
        f"which events to forward, comma-separated ({', '.join(ALL_EVENT_NAMES)}); empty: all",
        required=False,
        default="",
        example="installed,uninstalled,member.enrolled,coupon.redeemed",
    ),
}


def param_problems(given: dict[str, str], guard: UrlGuard) -> list[str]:
    """What is wrong with a passkit-events URL's params (minting's check, beyond required):
    `forward_to` must pass the URL guard (relay.access.urlguard) as far as its text shows."""
    problems = []
    target = given.get("forward_to", "").strip()
    parts = urlsplit(target)
    if target and (parts.scheme not in ("http", "https") or not parts.hostname):
        problems.append(
            "forward_to must be a web address starting with https://, such as the URL of a "
            "Zapier Catch Hook trigger or a Make custom webhook"
        )
    elif target and (problem := guard.problem(target)):
        problems.append(f"forward_to is refused: {problem}")
    unknown = [e for e in chosen_events(given.get("events", "")) if e not in ALL_EVENT_NAMES]
    if unknown:
        problems.append(
            f"events {', '.join(unknown)} unknown: choose from {', '.join(ALL_EVENT_NAMES)}"
        )
    return problems


def every_family(params: Mapping[str, str]) -> bool:
    """Whether a URL was minted with VERSION: every event family, numbers as numbers."""
    name, value = VERSION
    given = str(params.get(name, ""))
    return given.isdigit() and int(given) >= int(value)

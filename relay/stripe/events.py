"""Stripe's first stage: verify a webhook delivery, read its event, pick its template.

Sans-I/O like the rest of the path: raw bytes and a header in, a plain-JSON event out. The
signature is checked by stripe-python on the raw body, before any parsing, against every
configured secret (Stripe sends one `v1` per active secret while a secret is being rolled), with
Stripe's 300 s tolerance, both ways (a timestamp ahead of now is refused too); only `v1` counts,
so a test-mode `v0` alone is refused. Templates get plain dicts from `json.loads`, never SDK
objects (stripe-python 15+ objects are not dicts).

    templates/stripe/<event.type>.json.j2     one template per event type; none → "ignored"
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from relay.brokentext import BROKEN_ESCAPE, holds_broken
from relay.errors import RelayError

TOLERANCE = 300
TEMPLATE_PREFIX = "stripe/"
PARAMS_TEMPLATE = "stripe"  # what a Stripe endpoint's hook token names as its template


class InvalidSignature(RelayError):
    status = 400
    code = "invalid_signature"
    default_hint = (
        "Copy the endpoint's signing secret (whsec_…) from Stripe's dashboard, or the one "
        "`stripe listen` prints, into STRIPE_WEBHOOK_SECRET; several secrets go comma-separated."
    )


class InvalidEvent(RelayError):
    status = 400
    code = "invalid_body"
    default_hint = "Send snapshot events (the classic webhook endpoint), not thin events."


def _explain(problem: str) -> str:
    """stripe-python's reason, said for an operator reading the delivery log."""
    lowered = problem.lower()
    if "no stripe-signature header" in lowered or "unable to extract" in lowered:
        return "The request has no readable Stripe-Signature header: it did not come from Stripe."
    if "tolerance" in lowered:
        return (
            "The Stripe-Signature timestamp is more than 5 minutes old: a replayed request, "
            "or this server's clock is wrong (check NTP)."
        )
    if "expected scheme v1" in lowered:
        return "The Stripe-Signature header has no v1 signature (v0 test signatures are ignored)."
    return _MISMATCH


_MISMATCH = (
    "The Stripe-Signature does not match the body for any configured STRIPE_WEBHOOK_SECRET: "
    "a wrong secret (test vs live, dashboard vs stripe listen) or a changed body."
)


def verify(payload: bytes, header: str | None, secrets: Sequence[str]) -> dict[str, Any]:
    """The event in `payload` once its signature checks out against one of `secrets`."""
    try:
        payload.decode("utf-8")  # stripe-python decodes before it checks; Stripe sends UTF-8
    except UnicodeDecodeError:
        raise InvalidSignature(
            "The body is not UTF-8 text, so it did not come from Stripe."
        ) from None
    import stripe  # here, not at the top: stripe-python (with requests) is ~75 ms of start-up

    problems = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE)
            break
        except stripe.SignatureVerificationError as exc:
            problems.append(_explain(str(exc)))
    else:
        # A stale timestamp means one secret matched: more useful than the others' mismatch.
        raise InvalidSignature(min(problems, key=_MISMATCH.__eq__, default=_MISMATCH))
    # stripe-python refuses only the past; a timestamp far ahead would stay replayable for as
    # long, so the tolerance holds both ways.
    ahead = _signed_at(header or "") - time.time()
    if ahead > TOLERANCE:
        raise InvalidSignature(
            f"The Stripe-Signature timestamp is {ahead / 60:.0f} minutes ahead of this "
            "server's time: a forged or replayed request, or this server's clock is wrong "
            "(check NTP)."
        )
    return parse_event(payload)


def _signed_at(header: str) -> float:
    """The `t=` of a Stripe-Signature header that verified (so it holds one)."""
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.strip().isdigit():
            return float(value.strip())
    return 0.0


MAX_DEPTH = 32  # Stripe's events nest about eight levels; deeper is not an event


def parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEvent("The signed body is not JSON.") from None
    except RecursionError:
        raise InvalidEvent(f"The signed body nests deeper than {MAX_DEPTH} levels.") from None
    if _depth(event) > MAX_DEPTH:
        raise InvalidEvent(f"The signed body nests deeper than {MAX_DEPTH} levels.")
    if BROKEN_ESCAPE.search(payload) and holds_broken(event):
        raise InvalidEvent("The signed body holds a broken character (an unpaired surrogate).")
    if not isinstance(event, dict) or event.get("object") == "v2.core.event":
        raise InvalidEvent("This is a thin (v2) event; the relay reads snapshot events.")
    data = event.get("data")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise InvalidEvent("The body is not a Stripe event (no id or type).")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("The Stripe event has no data.object.")
    return event


def _walk(value: Any) -> Iterator[tuple[int, Any]]:
    """Every value under `value` with its depth, without recursion (a hostile body is deep)."""
    stack = [(1, value)]
    while stack:
        depth, item = stack.pop()
        yield depth, item
        if isinstance(item, dict):
            stack.extend((depth + 1, v) for pair in item.items() for v in pair)
        elif isinstance(item, list):
            stack.extend((depth + 1, v) for v in item)


def _depth(value: Any) -> int:
    return max(depth for depth, _ in _walk(value))


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload`, as Stripe computes it (for tests and demos)."""
    import stripe

    when = int(time.time()) if timestamp is None else timestamp
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, when))


def template_name(event: dict[str, Any]) -> str:
    return TEMPLATE_PREFIX + str(event["type"])


def context(event: dict[str, Any]) -> dict[str, Any]:
    """What a Stripe template sees besides `params` and `now`."""
    data = event["data"]
    return {
        "event": event,
        "object": data["object"],
        "previous": data.get("previous_attributes") or {},
        "spend": None,  # tier_for_spend's movement (relay.stripe.spend), set by the Stripe endpoint
    }


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """The delivery log's record of the request: the event itself (redacted later)."""
    keys = ("id", "type", "api_version", "livemode", "created", "data")
    return {key: event.get(key) for key in keys}

"""Faults for tests and benchmarks: latency, 429s, 503s, dropped connections, and how a
duplicate create is answered.

Switched at run time through `POST /_sandbox/faults` and applied to API routes only. Each API
call draws one number from the state's seeded RNG and the rates are consecutive slices of
[0, 1), so a fixed `seed` gives the same fault sequence on every run and the kinds never
overlap. 429/503 and `drop` happen before the operation runs (nothing changes, a retry is
safe); `drop_after` runs the operation and then loses the answer, the case idempotency keys
exist for. `next_429` answers the next N API calls 429 (with `retry_after`) whatever the rates,
then counts down to 0: one rate-limit answer at a moment a test chooses; `drop_after_next`
does the same with `drop_after`, and `down` answers 503 to every call of the RPCs it names
(by method name) until it is set to [] again: a look-up that cannot be made.

A drop must look like a broken connection to the client, not like an HTTP answer. ASGI has no
"close the socket" message, so `drop_connection` starts a response (with a Content-Length)
and returns without sending the body. uvicorn (both its h11 and httptools protocols) then logs
"ASGI callable returned without completing response." and closes the transport; the client
sees the headers and an early EOF, which httpx raises as `RemoteProtocolError` ("peer closed
connection without sending complete message body"). Under `httpx.ASGITransport` there is no
socket to close, so drops need a real server (tests start uvicorn on a loopback port).

PassKit documents no answer for a duplicate create (a member's externalId in its program, a
coupon's externalId in its campaign, a ticket number in its production): its published answers
are 200/400/401/403/404/500/503. `duplicates` picks how the sandbox answers one, so a client is
tested against each plausible reading, none of which it may recognise by its words:

    "conflict"  409, gRPC 6 ALREADY_EXISTS   "member with externalId CRM-1 already exists"
    "invalid"   400, gRPC 3 INVALID_ARGUMENT "record with that external id is not unique …"
    "internal"  500, gRPC 13 INTERNAL        "internal error" (a client retries it as a 5xx)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from relay.sandbox.errors import ALREADY_EXISTS, INVALID_ARGUMENT, SandboxError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]  # ASGI's, without importing it

RATES = ("rate_429", "rate_503", "rate_drop", "rate_drop_after")
DUPLICATE_STYLES = ("conflict", "invalid", "internal")
INTERNAL = 13  # gRPC INTERNAL: the gateway answers any code it does not map with 500


@dataclass(frozen=True)
class Faults:
    latency_ms: int = 0
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    rate_drop_after: float = 0.0
    retry_after: int = 1  # seconds, sent in Retry-After with each 429
    next_429: int = 0  # the next N API calls answer 429, before any rate is drawn
    duplicates: str = "conflict"  # how a duplicate create is answered: DUPLICATE_STYLES
    drop_after_next: int = 0  # the next N API calls are carried out and their answers lost
    down: tuple[str, ...] = ()  # RPCs (getMemberRecordByExternalId…) answering 503 while listed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def update_faults(current: Faults, changes: Any) -> tuple[Faults, int | None]:
    """Apply a `POST /_sandbox/faults` body: given keys replace current values, `seed` (an
    int) reseeds the RNG. Raises ValueError naming the offending key."""
    if not isinstance(changes, Mapping):
        raise ValueError("the body must be a JSON object")
    known = {*Faults.__dataclass_fields__, "seed"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown fault setting {unknown[0]!r}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    if "down" in changes:
        down = changes["down"]
        if not isinstance(down, list) or not all(isinstance(name, str) for name in down):
            raise ValueError("down must be a list of RPC names, such as getMemberRecordById")
        values["down"] = tuple(down)
    for key in ("latency_ms", "retry_after", "next_429", "drop_after_next"):
        if key in changes:
            value = changes[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 60_000:
                raise ValueError(f"{key} must be an integer between 0 and 60000")
            values[key] = value
    if "duplicates" in changes:
        if changes["duplicates"] not in DUPLICATE_STYLES:
            raise ValueError(f"duplicates must be one of {', '.join(DUPLICATE_STYLES)}")
        values["duplicates"] = changes["duplicates"]
    for key in RATES:
        if key in changes:
            value = changes[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number between 0 and 1")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be a number between 0 and 1")
            values[key] = float(value)
    updated = replace(current, **values)
    if sum(getattr(updated, key) for key in RATES) > 1.0 + 1e-9:
        raise ValueError("the fault rates add up to more than 1")
    seed = changes.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer")
    return updated, seed


def duplicate(style: str, what: str, key: str, value: str) -> SandboxError:
    """The error for creating a `what` whose `key` (`value`) is taken in its program, campaign
    or production, in the `duplicates` style in force (see above)."""
    if style == "invalid":
        return SandboxError(
            INVALID_ARGUMENT, f"record with that external id is not unique: {key} {value}"
        )
    if style == "internal":
        return SandboxError(INTERNAL, "internal error")
    return SandboxError(ALREADY_EXISTS, f"{what} with {key} {value} already exists")


def choose_fault(faults: Faults, rng: random.Random) -> str | None:
    """ "429", "503", "drop", "drop_after" or None for this call."""
    if not any(getattr(faults, key) for key in RATES):
        return None  # no draw: turning faults on later starts the seeded sequence afresh
    roll = rng.random()
    edge = 0.0
    for key in RATES:
        edge += getattr(faults, key)
        if roll < edge:
            return key.removeprefix("rate_")
    return None


async def drop_connection(send: Send, status: int) -> None:
    """Start an answer and never finish it: the server closes the connection (see above).
    `status` only shows in the server's access log; the client never gets to use it."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"1024"),
                (b"x-sandbox-fault", b"drop"),
            ],
        }
    )

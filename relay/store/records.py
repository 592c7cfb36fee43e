"""The plain records the store reads and writes, shared by every backend.

Times are Unix timestamps (float seconds, UTC) throughout: they compare and subtract the same way
in SQLite and PostgreSQL, and the callers already have a clock that gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from relay.ids import unique_hex

Source = Literal["hook", "stripe", "passkit"]
Outcome = Literal["ok", "failed", "skipped", "duplicate", "ignored", "dry_run"]
ClaimState = Literal["won", "done", "busy"]

OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "skipped", "duplicate", "ignored", "dry_run")
DAY = 86_400.0
IDEMPOTENCY_TTL = 7 * DAY
DELIVERY_RETENTION = 30 * DAY
# A pending claim this old belongs to a process that died mid-delivery (a live one finishes well
# inside Zapier's 30 s timeout), so another request may take it over.
STALE_AFTER = 60.0
DISMISSED = "dismissed"  # `resolved_by` of a failure the operator dismissed


@dataclass(frozen=True)
class HookRecord:
    """A minted hook as the registry knows it; the signed URL stays the source of truth."""

    id: str
    template: str
    params: dict[str, str] = field(default_factory=dict)
    label: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None
    last_used_at: float | None = None
    deliveries: int = 0
    failures: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Claim:
    """The answer to "may I run this idempotent request?".

    - ``won``: the caller runs it, then calls ``complete`` (answer to replay) or ``release``
      (a failure worth retrying: the key is forgotten).
    - ``done``: it already ran; ``status`` and ``body`` are the stored answer to replay.
    - ``busy``: another request holds the key right now; ``Store.wait_for`` waits for it.
    """

    state: ClaimState
    scope: str
    key: str
    owner: str
    status: int | None = None
    body: str | None = None

    @property
    def won(self) -> bool:
        return self.state == "won"

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def busy(self) -> bool:
        return self.state == "busy"


@dataclass(frozen=True)
class Completion:
    """A won claim's answer to store (`Store.complete`), handed to `Store.record_delivery` so
    it is written in the delivery log's transaction instead of one of its own."""

    claim: Claim
    status: int
    body: str
    people: tuple[str, ...] = ()


def new_delivery_id(at: float) -> str:
    """A delivery id that sorts by time: microseconds in fixed-width hex, then randomness.

    Sorting by id is then sorting by time, so the log pages by id alone (keyset pagination), and
    processes sharing one database never collide without asking it for a sequence number.
    """
    return f"dl_{int(at * 1_000_000):014x}{unique_hex(8)}"


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery (hook or Stripe) as the log keeps it.

    ``request``, ``passkit_request`` and ``passkit_response`` are JSON values, already redacted
    by the caller (see ``relay.redact``). An empty ``id`` is assigned on recording.
    """

    at: float
    source: Source
    hook_id: str | None
    template: str
    operation: str
    outcome: Outcome
    status: int
    latency_ms: float
    request_id: str
    error_code: str | None = None
    request: Any = None
    passkit_request: Any = None
    passkit_response: Any = None
    replay_of: str | None = None
    id: str = ""
    error_message: str | None = None  # the friendly message answered, or why it was skipped
    error_field: str | None = None  # the field a failure was about, when it names one
    error_hint: str | None = None  # the hint the sender was given with the failure
    # The people the delivery was about (emails, external ids, Stripe customer ids), in memory
    # only: the store keeps their blind indexes, so `relay erase` finds the row.
    people: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # The settings the hook's token carries, in memory only: a hook used on a database that did
    # not mint it is registered with them (relay.store.queries.COUNT_HOOK).
    hook_params: Mapping[str, str] | None = field(default=None, compare=False, repr=False)
    # What a later delivery that fixes this one shares with it (its idempotency key, Stripe's
    # event id, or the operation and the person), in memory only: the store keeps its blind
    # index, so a later success on the same hook resolves this failure.
    fix_key: str | None = field(default=None, compare=False, repr=False)
    # The words of the person's name, in memory only: kept as blind indexes (the console's
    # search finds a person by a whole word of their name; relay.store.personal.name_words).
    names: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # A failure's resolution: the delivery that fixed it ("dismissed": the operator's Dismiss).
    resolved_by: str | None = None
    resolved_at: float | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None

    @property
    def dismissed(self) -> bool:
        return self.resolved_by == DISMISSED


@dataclass(frozen=True)
class DeliveryStats:
    """An overview of the log since some time: counts per outcome and latency percentiles."""

    total: int
    by_outcome: dict[str, int]
    p50_ms: float | None
    p95_ms: float | None

    @property
    def ok(self) -> int:
        return self.by_outcome.get("ok", 0)

    @property
    def failed(self) -> int:
        return self.by_outcome.get("failed", 0)


@dataclass(frozen=True)
class FailureGroup:
    """Open failures sharing a cause: the same error code and field (whichever hook). `newest`
    is the latest of them (it says the cause); `count` and `first_at` cover the whole group."""

    newest: DeliveryRecord
    count: int
    first_at: float

    @property
    def last_at(self) -> float:
        return self.newest.at


@dataclass(frozen=True)
class HookFailing:
    """A failing hook as `hook_alerts` holds it (see relay.delivery.alerts): since when, how many
    failures so far, when it was last alerted, and whether the call that returned it alerts."""

    hook_id: str
    failing_since: float
    alerted_at: float
    failures: int
    alert: bool = False

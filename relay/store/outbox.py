"""The PassKit events outbox (migration 8): verified PassKit events waiting to be forwarded to a
Zapier catch hook or a Make webhook, forwarded, or given up on.

An event is written once when PassKit's request is answered (its id comes from the hook, the
nonce and the body, so PassKit sending the same request twice stores one row), then forwarded
by whichever process claims it first. A claim is one atomic UPDATE taking due, unleased rows
and giving them a lease: the outer WHERE repeats the conditions, so on PostgreSQL a second
process that waited for the row lock re-reads the row, sees the lease and skips it; SQLite has
one writer at a time. Finishing checks the lease owner, so a worker whose lease ran out cannot
overwrite what another one did.
"""

# ruff: noqa: S608  (statements are constants; values are parameters)

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from relay.sealing import Sealer
from relay.store.personal import (
    open_json,
    open_text,
    people_in,
    person_column,
    seal_json,
    seal_text,
)
from relay.store.queries import Row, Statements

EventState = Literal["pending", "forwarded", "failed"]
EVENT_STATES: tuple[EventState, ...] = ("pending", "forwarded", "failed")

COLUMNS = (
    "id, hook_id, event, received_at, forward_to, body, state, attempts, next_at, due_since, "
    "forwarded_at, last_status, last_error"
)
ENQUEUE = (
    f"INSERT INTO passkit_events ({COLUMNS}, person) VALUES (:id, :hook_id, :event, "
    ":received_at, :forward_to, :body, 'pending', 0, :received_at, :received_at, NULL, NULL, "
    "NULL, :person) "
    "ON CONFLICT (id) DO NOTHING"
)
_CLAIMABLE = "state = 'pending' AND next_at <= :now AND (lease_until IS NULL OR lease_until < :now)"
CLAIM = (
    "UPDATE passkit_events SET lease_owner = :owner, lease_until = :until, "
    "attempts = attempts + 1 WHERE id IN (SELECT id FROM passkit_events WHERE "
    f"{_CLAIMABLE} ORDER BY next_at LIMIT :limit) AND {_CLAIMABLE} RETURNING {COLUMNS}"
)
FINISH = (
    "UPDATE passkit_events SET state = :state, next_at = :next_at, forwarded_at = :forwarded_at, "
    "last_status = :status, last_error = :error, lease_owner = NULL, lease_until = NULL "
    "WHERE id = :id AND lease_owner = :owner"
)
# Resending starts the retry clock again; an event being forwarded right now is left alone.
RESEND = (
    "UPDATE passkit_events SET state = 'pending', next_at = :now, due_since = :now "
    "WHERE id = :id AND (lease_until IS NULL OR lease_until < :now)"
)
GET = f"SELECT {COLUMNS} FROM passkit_events WHERE id = :id"
LIST = f"SELECT {COLUMNS} FROM passkit_events ORDER BY received_at DESC, id DESC LIMIT :limit"
LIST_STATE = (
    f"SELECT {COLUMNS} FROM passkit_events WHERE state = :state "
    "ORDER BY received_at DESC, id DESC LIMIT :limit"
)
# Real events' ids start evt_ (relay.web.event_endpoint); samples' smp_ (relay.events.sample).
LAST_REAL = (
    f"SELECT {COLUMNS} FROM passkit_events WHERE hook_id = :hook_id AND id LIKE 'evt%' "
    "ORDER BY received_at DESC, id DESC LIMIT 1"
)
PURGE = (
    "DELETE FROM passkit_events WHERE id IN (SELECT id FROM passkit_events "
    "WHERE state <> 'pending' AND received_at < :before LIMIT :chunk)"
)


@dataclass(frozen=True)
class PassKitEvent:
    """One verified PassKit event and where its forwarding stands. `body` is the flat record
    sent to `forward_to` (relay.events.flatten)."""

    id: str
    hook_id: str
    event: str
    received_at: float
    forward_to: str
    body: dict[str, Any] = field(default_factory=dict)
    state: EventState = "pending"
    attempts: int = 0
    next_at: float = 0.0
    due_since: float = 0.0
    forwarded_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None


def _event(row: Row, sealer: Sealer | None) -> PassKitEvent:
    """An event as read: its body (the flat event: emails, names) and last error opened; a
    sealed body this store cannot open reads as {}."""
    (id_, hook_id, event, received_at, forward_to, body, state, attempts, next_at, due_since,
     forwarded_at, last_status, last_error) = row  # fmt: skip
    return PassKitEvent(id_, hook_id, event, received_at, forward_to,
                        open_json(sealer, body) or {}, state, int(attempts), next_at, due_since,
                        forwarded_at, last_status, open_text(sealer, last_error))  # fmt: skip


class EventOutbox(Statements):
    """The outbox's statements over a backend's read and write primitives (SQLStore's)."""

    sealer: Sealer | None

    async def enqueue_event(self, event: PassKitEvent) -> bool:
        """Store a new event to forward; False when one with its id is there already."""
        changed, _ = await self._write(ENQUEUE, {
            "id": event.id, "hook_id": event.hook_id, "event": event.event,
            "received_at": event.received_at, "forward_to": event.forward_to,
            "body": seal_json(self.sealer, event.body),
            "person": person_column(self.sealer, people_in(event.body)),
        })  # fmt: skip
        return changed == 1

    async def claim_events(
        self, owner: str, now: float, *, lease: float, limit: int = 10
    ) -> list[PassKitEvent]:
        """Due events, leased to `owner` until `now + lease` (no other claim takes them)."""
        params = {"owner": owner, "now": now, "until": now + lease, "limit": limit}
        _, rows = await self._write(CLAIM, params)
        return [_event(row, self.sealer) for row in rows]

    async def finish_event(
        self,
        event_id: str,
        owner: str,
        *,
        state: EventState,
        next_at: float,
        forwarded_at: float | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Record an attempt's result; False if `owner` no longer holds the lease."""
        changed, _ = await self._write(FINISH, {
            "id": event_id, "owner": owner, "state": state, "next_at": next_at,
            "forwarded_at": forwarded_at, "status": status,
            "error": seal_text(self.sealer, error),
        })  # fmt: skip
        return changed == 1

    async def resend_event(self, event_id: str, now: float) -> bool:
        changed, _ = await self._write(RESEND, {"id": event_id, "now": now})
        return changed == 1

    async def get_event(self, event_id: str) -> PassKitEvent | None:
        rows = await self._read(GET, {"id": event_id})
        return _event(rows[0], self.sealer) if rows else None

    async def list_events(
        self, *, state: EventState | None = None, limit: int = 50
    ) -> list[PassKitEvent]:
        """Newest first."""
        if state is None:
            return [_event(r, self.sealer) for r in await self._read(LIST, {"limit": limit})]
        rows = await self._read(LIST_STATE, {"state": state, "limit": limit})
        return [_event(r, self.sealer) for r in rows]

    async def last_real_event(self, hook_id: str) -> PassKitEvent | None:
        """The newest event PassKit sent to `hook_id` (not a sample), while it is kept."""
        rows = await self._read(LAST_REAL, {"hook_id": hook_id})
        return _event(rows[0], self.sealer) if rows else None

    async def purge_events(self, before: float, chunk: int = 5_000) -> int:
        """Forget forwarded and failed events received before `before`; how many."""
        total = 0
        while True:
            changed, _ = await self._write(PURGE, {"before": before, "chunk": chunk})
            total += changed
            if changed < chunk:
                return total

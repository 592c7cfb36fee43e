"""Checkout records (migration 9): which pass a Stripe Checkout session ended with, so the
customer's success page (relay.web.checkout) can show it without asking Stripe.

A record is written when the relay handles the session's `checkout.session.completed` and
issues or finds a pass; the same event again (Stripe's retry, a replay) writes the same row.
`person` is the blind index of the customer's email (relay.sealing): `erase_checkouts` removes
a person's rows by it, and nothing in the table names anyone in clear.
"""

# ruff: noqa: S608  (statements are constants; values are parameters)

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.store.queries import Row, Statements

COLUMNS = "session_id, hook_id, pass_id, pass_url, program_id, program_name, person, created_at"
SAVE = (
    f"INSERT INTO checkouts ({COLUMNS}) VALUES (:session_id, :hook_id, :pass_id, :pass_url, "
    ":program_id, :program_name, :person, :created_at) ON CONFLICT (session_id) DO UPDATE SET "
    "hook_id = excluded.hook_id, pass_id = excluded.pass_id, pass_url = excluded.pass_url, "
    "program_id = excluded.program_id, "
    "program_name = COALESCE(excluded.program_name, checkouts.program_name), "
    "person = excluded.person"
)
GET = f"SELECT {COLUMNS} FROM checkouts WHERE session_id = :session_id"
ERASE = "DELETE FROM checkouts WHERE person = :person"
PURGE = "DELETE FROM checkouts WHERE created_at < :before"


@dataclass(frozen=True)
class CheckoutRecord:
    """The pass a Checkout session ended with. `person`: the blind index of the customer's
    email, None when the session carried none."""

    session_id: str
    hook_id: str
    pass_id: str
    pass_url: str
    program_id: str | None
    program_name: str | None
    person: str | None
    created_at: float


def _record(row: Row) -> CheckoutRecord:
    session_id, hook_id, pass_id, pass_url, program_id, program_name, person, at = row
    return CheckoutRecord(session_id, hook_id, pass_id, pass_url, program_id, program_name,
                          person, float(at))  # fmt: skip


class CheckoutRecords(Statements):
    """The checkout records' statements over a backend's primitives (SQLStore's)."""

    async def save_checkout(self, record: CheckoutRecord) -> None:
        """Record a session's pass (again: the row is brought up to date)."""
        await self._write(SAVE, {
            "session_id": record.session_id, "hook_id": record.hook_id,
            "pass_id": record.pass_id, "pass_url": record.pass_url,
            "program_id": record.program_id, "program_name": record.program_name,
            "person": record.person, "created_at": record.created_at,
        })  # fmt: skip

    async def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        rows = await self._read(GET, {"session_id": session_id})
        return _record(rows[0]) if rows else None

    async def erase_checkouts(self, person_blinds: Sequence[str]) -> int:
        """Delete every record whose person is one of `person_blinds`; how many."""
        total = 0
        for blind in dict.fromkeys(person_blinds):
            changed, _ = await self._write(ERASE, {"person": blind})
            total += changed
        return total

    async def purge_checkouts(self, before: float) -> int:
        """Forget records written before `before` (the page is for the minutes after paying)."""
        changed, _ = await self._write(PURGE, {"before": before})
        return changed

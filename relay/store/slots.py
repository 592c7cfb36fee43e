"""Where the outbound rate limiter (relay.passkit.outbound) and the store meet: a `Slot` is the
answer to "may I call PassKit?", and `Slots` is what keeps them (in memory in one process, or in
the database for every process: relay.store.outbound). It lives below both, so neither imports
the other's module to name it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Slot:
    """The answer to "may I call?": `wait` seconds until the slot (taken), or until the first
    free one (not taken: it was further off than the caller may wait)."""

    wait: float
    taken: bool
    # When the question was sent (time.monotonic), where the answer's trip is measured from
    # after waiting for a database connection: that wait does not make the call late.
    asked: float | None = None


class Slots(Protocol):
    async def take(self, interval: float, latest: float) -> Slot:
        """Take the next free slot if it starts within `latest` seconds; then the next one
        starts `interval` seconds after it."""

    async def pause(self, seconds: float) -> None:
        """No slot starts within `seconds` from now (a later pause already stored stands)."""

    async def paused_for(self) -> float:
        """Seconds left of a pause in force; 0 without one."""

"""The outbound rate toward PassKit: `PASSKIT_RATE_LIMIT` calls a second, shared by every
process on one database, and PassKit's `429 Retry-After` obeyed by all of them.

"Next free slot" (GCRA without a burst): a call takes the slot at
`max(next_free, paused_until, now)` and moves `next_free` on by `1 / rate`; its caller sleeps
until that slot. Calls are then at least `1 / rate` apart, so no one-second window holds more
than `rate` of them (one more when both ends fall exactly on a call). A burst allowance would
let a window hold more, so there is none: two calls at the same moment go `1 / rate` apart.

Where the slots live (`Slots`):

- PostgreSQL: one row updated by one statement per call, on the database's clock, so every
  process (dyno) shares the one budget (`relay.store.outbound`, migration 6).
- SQLite or no database (one process): in memory, `LocalSlots`, no round trip.

A 429 with `Retry-After` stores `paused_until` in the same place, so every process holds its
calls until then, not just the one that was told. A caller that slept for its slot (longer
than `RECHECK_AFTER`) asks once more whether a pause began meanwhile (another process saw a
429), and if so takes a slot after it.

A caller that would call more than `LATE` after its slot (its process was busy: the answer
reached it late, or it overslept) takes a later slot instead, so a process that stalled for a
moment cannot fire a bunch of calls at once, on top of other processes' calls, when it catches up
(`RETAKES` times at most: a process busy all the time would otherwise only add round trips).

A caller waits only as long as it may (its retry budget); a slot further off is not taken and
the delivery is answered 503 `passkit_busy` with `Retry-After`, which Zapier and Make retry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from relay.errors import PassKitBusy
from relay.store import Store
from relay.store.slots import Slot, Slots

# A turn used later than this after its slot is given up for a later one: past it, late calls
# of one process could bunch up with the next ones (at most this many seconds' worth extra in
# any one-second window).
LATE = 0.05
# How many times a late caller takes a later turn before it calls anyway: a process so busy
# that every answer reaches it late would otherwise ask again and again, adding a round trip
# each time to every call while taking nothing from PassKit (measured: +240 ms p50 at 200
# calls a second on two busy cores, with a limit that never throttled).
RETAKES = 2
# A caller that slept longer than this asks whether a pause began meanwhile; a shorter sleep is
# as good as a call already on its way (and no limit that throttles leaves only a few µs).
RECHECK_AFTER = 0.01


class LocalSlots:
    """The slots of one process, in memory, on an injected monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next_free = -math.inf
        self._paused_until = -math.inf

    async def take(self, interval: float, latest: float) -> Slot:
        now = self._clock()
        start = max(self._next_free, self._paused_until, now)
        if start - now > latest:
            return Slot(start - now, taken=False)
        self._next_free = start + interval
        return Slot(start - now, taken=True)

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


class OutboundLimiter:
    """`rate` calls a second over the `Slots` that `slots` gives (opened on first use, as the
    store is; without it, this process's own); `rate` 0 lets every call through at once."""

    def __init__(
        self,
        rate: float,
        slots: Callable[[], Awaitable[Slots]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._open = slots
        self._slots: Slots | None = None if slots else LocalSlots(clock)

    async def slots(self) -> Slots:
        if self._slots is None:
            assert self._open is not None
            self._slots = await self._open()
        return self._slots

    async def acquire(self, within: float) -> None:
        """Return when this process may make one PassKit call, at most `within` seconds from
        now; raise PassKitBusy when no slot is free that soon."""
        if self.rate <= 0:
            return
        slots = await self.slots()
        deadline = self._clock() + within
        retakes = 0
        while True:
            asked = self._clock()
            slot = await slots.take(1.0 / self.rate, max(0.0, deadline - asked))
            answered = self._clock()
            if slot.asked is not None:
                asked = slot.asked
            if not slot.taken:
                raise PassKitBusy(
                    f"The relay is keeping to PassKit's rate ({self.rate:g} calls a second) and "
                    "had no free turn for this delivery in time; nothing was sent.",
                    retry_after=max(1, math.ceil(slot.wait)),
                )
            paused = 0.0
            if slot.wait > 0:
                await self._sleep(slot.wait)
            if slot.wait > RECHECK_AFTER:  # a 429 elsewhere may have paused everyone meanwhile
                paused = await slots.paused_for()
            # How late the call would be: the answer's trip and any oversleep.
            late = (answered - asked) + (self._clock() - answered - slot.wait)
            if paused > 0:
                continue  # a 429 elsewhere: a turn after the pause (the deadline bounds this)
            if late <= LATE or retakes == RETAKES:
                return
            retakes += 1  # this process was too busy to call on time: a later turn

    async def pause(self, seconds: float) -> None:
        """PassKit answered 429 with Retry-After `seconds`: every process holds its calls."""
        if self.rate > 0 and seconds > 0:
            await (await self.slots()).pause(seconds)


def shared_slots(store: Callable[[], Awaitable[Store]]) -> Callable[[], Awaitable[Slots]]:
    """The slots of the store `store()` opens: the database's shared row where the backend
    has one (PostgreSQL), else this process's own (SQLite: one process)."""

    async def open_slots() -> Slots:
        return (await store()).outbound_slots() or LocalSlots()

    return open_slots

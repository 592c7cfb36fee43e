"""PassKit's rate shared through PostgreSQL: the `passkit_rate` row (migration 6) behind
`relay.passkit.outbound.Slots`, so every process (dyno) on one database draws from one budget.

Each operation is one statement, one round trip. Taking a slot is an `UPDATE … RETURNING` of
the single row: PostgreSQL's row lock makes concurrent takers queue for it, and each sees the
row as the one before left it, so two processes never get the same slot. Times are the
database's own (`statement_timestamp()`) and answers are relative ("wait 0.35 s"), so processes
whose clocks disagree still agree on the slots. What is left between processes is the trip
of the answer back (a fraction of a millisecond on one network), which can bring two calls of
different processes that much closer than `1 / rate`.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from relay.store.queries import Params, Row
from relay.store.slots import Slot

# "Now" is the database's clock in Unix seconds at the statement's start, the same for every
# part of it. The slot is taken only when it starts within :latest seconds; either way one row
# answers: the seconds until the slot (taken) or until the first free one (not taken). A taken
# slot's wait is measured when the row is written (clock_timestamp), after any wait for the row
# lock, so the taker sleeps from (almost) the moment it is answered.
TAKE_SLOT = """
WITH clock AS (SELECT EXTRACT(EPOCH FROM statement_timestamp())::float8 AS now),
taken AS (
    UPDATE passkit_rate
    SET next_at = GREATEST(next_at, paused_until, clock.now) + :interval
    FROM clock
    WHERE id = 1 AND GREATEST(next_at, paused_until, clock.now) <= clock.now + :latest
    RETURNING next_at - :interval - EXTRACT(EPOCH FROM clock_timestamp())::float8 AS wait
)
SELECT wait, TRUE FROM taken
UNION ALL
SELECT GREATEST(next_at, paused_until, clock.now) - clock.now, FALSE
FROM passkit_rate, clock
WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM taken)
"""
PAUSE = """
UPDATE passkit_rate
SET paused_until = GREATEST(paused_until, EXTRACT(EPOCH FROM statement_timestamp())::float8
                                          + :seconds)
WHERE id = 1
"""

PAUSED_FOR = """
SELECT GREATEST(paused_until - EXTRACT(EPOCH FROM statement_timestamp())::float8, 0)
FROM passkit_rate WHERE id = 1
"""


class SharedSlots:
    """`relay.passkit.outbound.Slots` in the `passkit_rate` row, over a store's connection pool
    (autocommit: a statement is its own transaction)."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection], render: Any) -> None:
        self._pool = pool
        self._render = render  # the store's `:name` → psycopg parameter rewriting

    async def _one(self, sql: str, params: Params) -> tuple[Row, float]:
        """The statement's one row, and when it was sent (after waiting for a connection)."""
        async with self._pool.connection() as conn:
            sent = time.monotonic()
            cursor = await conn.execute(self._render(sql), params)
            row = await cursor.fetchone()
        assert row is not None  # migration 6 inserted the row
        return row, sent

    async def take(self, interval: float, latest: float) -> Slot:
        (wait, taken), sent = await self._one(TAKE_SLOT, {"interval": interval, "latest": latest})
        return Slot(max(0.0, float(wait)), bool(taken), asked=sent)

    async def pause(self, seconds: float) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(self._render(PAUSE), {"seconds": seconds})

    async def paused_for(self) -> float:
        (paused,), _ = await self._one(PAUSED_FOR, {})
        return float(paused)

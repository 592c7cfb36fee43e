"""PostgreSQL backend: psycopg 3's async driver behind a small connection pool.

Several relay processes (Heroku dynos) share one database safely because every decision is one
atomic statement (see `sql.py`), batches touch hook rows in id order (no deadlocks), and
migrations run under an advisory lock. Connections run in autocommit mode (a single statement is
its own transaction; batches and migrations open one explicitly), so no connection is ever left
idle inside a transaction between requests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import lru_cache

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from relay.store import migrations
from relay.store.outbound import SharedSlots
from relay.store.queries import Params, Row
from relay.store.sql import SQLStore

# Any constant works, as long as every relay process uses the same one: "relay" in ASCII.
MIGRATION_LOCK = 0x72656C6179
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=256)
def to_psycopg(sql: str) -> str:
    """`:name` parameters (shared with SQLite) rewritten as psycopg's `%(name)s`."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


class PostgresStore(SQLStore):
    """A store in a PostgreSQL database, from a `postgres://` or `postgresql://` URL."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__()
        self._pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
            # Heroku and proxies drop idle connections; check one before handing it out rather
            # than fail the delivery that happens to get it.
            check=AsyncConnectionPool.check_connection,
            name="relay-store",
        )

    async def open(self, *, timeout: float = 30.0) -> None:
        await self._pool.open(wait=True, timeout=timeout)

    async def _read(self, sql: str, params: Params) -> list[Row]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(to_psycopg(sql), params)
            return await cursor.fetchall()

    async def _write(self, sql: str, params: Params) -> tuple[int, list[Row]]:
        # Autocommit: one statement is its own transaction, without BEGIN/COMMIT round trips.
        async with self._pool.connection() as conn:
            cursor = await conn.execute(to_psycopg(sql), params)
            rows = await cursor.fetchall() if cursor.description else []
            return cursor.rowcount, rows

    async def _write_batch(self, steps: Sequence[tuple[str, Sequence[Params]]]) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for sql, rows in steps:
                if rows:
                    # executemany pipelines the rows: one round trip per batch, not per row.
                    await cursor.executemany(to_psycopg(sql), rows)

    def outbound_slots(self) -> SharedSlots:
        return SharedSlots(self._pool, to_psycopg)

    async def migrate(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            # Held until this transaction ends: a second process starting at the same moment
            # waits here, then finds every migration applied.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(migrations.render(migrations.CREATE_MIGRATIONS_TABLE, "postgres"))
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in await cursor.fetchall()}
            for version, statements in migrations.pending(applied, "postgres"):
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                    (version, time.time()),
                )

    async def _close(self) -> None:
        await self._pool.close()

"""SQLite backend: the stdlib `sqlite3` module, kept off the event loop by two worker threads.

- WAL journal: readers never block the writer, and several relay processes can share one file.
- `synchronous=NORMAL`: a commit survives the relay process being killed (-9 included), which is
  the promise we make for answered deliveries; only an OS crash or power cut may lose the last
  commits. FULL would fsync on every commit for that, at a large cost in throughput.
- One writer connection does every write, in order; group commit (see `batch.py`) keeps that
  single writer from becoming a queue of tiny transactions. A batch of short keyed writes (a
  delivery's log row, its idempotency claims and completions) runs on the event loop's own
  thread when the writer's thread is idle and the lock is free: the trip to a thread cost more
  CPU than those writes (futex wake-ups, the GIL handed back and forth: ~11 % of a delivery).
  Anything else (erasing, purges, imports, migrations), and any batch that would have to wait
  for another process's lock, runs on the writer's thread, which waits up to `BUSY_TIMEOUT_MS`.
- Writes start with BEGIN IMMEDIATE: the write lock is taken up front, so a process waiting for
  another one's lock waits for it instead of failing on a lock upgrade. The writer's connection
  keeps SQLite's `busy_timeout` at 0 and the writer's thread retries BEGIN itself, as SQLite's
  busy handler would: the loop's inline batches must never wait, and switching the timeout off
  and on around each of them was two more statements a transaction.
- One reader connection on a second thread serves queries, so the admin console reading the log
  never delays a delivery's commit. `:memory:` databases are private to one connection, so there
  the reader is the writer.
- Checkpoints (copying the WAL back into the database, with its fsyncs) run on the reader's
  thread every `CHECKPOINT_EVERY` commits, PASSIVE: SQLite's own automatic checkpoint runs inside
  the commit that crosses 1,000 pages, and made one delivery in a hundred wait 3-5 ms for it
  (the p99 of the writer's work fell from 1.06 to 0.34 ms without it). The writer keeps an
  automatic checkpoint at `WAL_BACKSTOP_PAGES` should the reader's fall behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar, cast

from relay.store import migrations
from relay.store import queries as q
from relay.store.batch import GroupCommit
from relay.store.queries import Params, Row
from relay.store.sql import SQLStore

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
# The pauses, in ms, of SQLite's default busy handler (sqliteDefaultBusyCallback), then its last.
_BUSY_STEPS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
CHECKPOINT_EVERY = 256  # commits between two checkpoints on the reader's thread (64: ~5 % more CPU)
WAL_BACKSTOP_PAGES = 10_000  # ~40 MB of WAL: the writer checkpoints itself only past this

log = logging.getLogger("relay.store")

# Statements that change one row found by its key: cheap and bounded, so the loop may run them.
KEYED_STATEMENTS = frozenset({q.CLAIM, *q.CLAIM_NEW.values(), q.COMPLETE, q.RELEASE})


@dataclass(frozen=True, slots=True)
class _Steps:
    """A batch for the writer's queue: each statement run once per row (`executemany`)."""

    steps: Sequence[tuple[str, Sequence[Params]]]


class _LockTaken(Exception):
    """Another connection holds SQLite's write lock: the event loop must not wait for it."""


def _connect(path: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves rather than let the module guess.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # the switch to WAL may wait
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")  # the writer's is 0: see _begin
    return conn


def _begin(conn: sqlite3.Connection, *, wait: bool) -> None:
    """BEGIN IMMEDIATE on the writer's connection, whose `busy_timeout` is 0. Without `wait`,
    `_LockTaken` at once if another connection holds the write lock; with it, retried in
    SQLite's own busy handler's steps for up to `BUSY_TIMEOUT_MS`, then SQLite's "database is
    locked"."""
    waited = 0
    for step in itertools.chain(_BUSY_STEPS_MS, itertools.repeat(_BUSY_STEPS_MS[-1])):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if not wait:
                raise _LockTaken from exc
            if waited >= BUSY_TIMEOUT_MS:
                raise
        pause = min(step, BUSY_TIMEOUT_MS - waited)
        time.sleep(pause / 1000)
        waited += pause


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for another connection that is doing the same: SQLite answers
    "database is locked" to the loser at once, without its busy timeout (seen with two relays
    opening one new file together)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SQLiteStore(SQLStore):
    """A store in one SQLite file (or `:memory:` for tests and demos)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        # Each connection is used by one thread at a time: the reader's by its executor's one
        # worker; the writer's by its executor's, or by the loop while that one is idle.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="relay-sqlite-writer")
        self._reader = (
            self._writer
            if path == ":memory:"
            else ThreadPoolExecutor(1, thread_name_prefix="relay-sqlite-reader")
        )
        self._write_conn: sqlite3.Connection | None = None
        # One queue for every write: single statements (claims, completions) and the delivery
        # log's batches share each transaction (one commit where there were two).
        self._writes: GroupCommit[tuple[str, Params] | _Steps, tuple[int, list[Row]] | None] = (
            GroupCommit(self._flush_writes)
        )
        self._read_conn: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpointing = False
        self._writer_jobs = 0  # calls queued or running on the writer's thread

    async def open(self) -> None:
        self._write_conn = await self._on(
            self._writer, lambda: _connect(self.path, busy_timeout_ms=0)
        )
        if self._reader is self._writer:
            self._read_conn = self._write_conn
        else:
            self._read_conn = await self._on(self._reader, lambda: _connect(self.path))
            self._write_conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        on_writer = executor is self._writer
        self._writer_jobs += on_writer
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        finally:
            self._writer_jobs -= on_writer

    async def _write_soon(self, work: Callable[[sqlite3.Connection], T], *, keyed: bool) -> T:
        """Run `work` in a write transaction: here, on the loop's thread, when it is `keyed`
        and nothing is queued on the writer's thread (whose connection this is; the two never
        use it at once), else on the writer's thread."""
        if keyed and self._writer_jobs == 0:
            try:
                return self._transaction(work, wait=False)
            except _LockTaken:  # another process is writing: wait for it off the loop
                pass
        return await self._on(self._writer, lambda: self._transaction(work))

    def _conn(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise RuntimeError("the SQLite store is not open (or already closed)")
        return conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T], *, wait: bool = True) -> T:
        conn = self._conn(self._write_conn)
        _begin(conn, wait=wait)
        try:
            result = work(conn)
        except BaseException:
            # SQLite already rolled back on some errors (disk full, I/O); don't mask them.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and self._reader is not self._writer:
            self._checkpoint_soon()
        return result

    def _checkpoint_soon(self) -> None:
        """Queue a PASSIVE checkpoint on the reader's thread (one at a time): it copies what it
        can without waiting for readers or writers, so no commit waits for it."""
        if self._checkpointing:
            return
        self._checkpointing = True
        try:
            self._reader.submit(self._checkpoint)
        except RuntimeError:  # the store is closing: its reader takes no more work
            self._checkpointing = False

    def _checkpoint(self) -> None:
        conn = self._read_conn  # read once: closing sets it to None from the loop's thread
        try:
            if conn is not None:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # busy or closing: the next one, or the backstop, catches up
            log.debug("background checkpoint skipped: %s", exc)
        finally:
            self._checkpointing = False

    async def _read(self, sql: str, params: Params) -> list[Row]:
        conn = self._conn(self._read_conn)
        return await self._on(self._reader, lambda: conn.execute(sql, params).fetchall())

    async def _write(self, sql: str, params: Params) -> tuple[int, list[Row]]:
        # Group-committed like the delivery log: concurrent deliveries' claims and completions
        # share one transaction and one trip to the writer thread, instead of queueing there
        # one by one (the writer was the relay's bottleneck under load).
        result = await self._writes.submit((sql, params))
        assert result is not None
        return result

    async def _write_each(
        self, statements: Sequence[tuple[str, Params]]
    ) -> list[tuple[int, list[Row]]]:
        # Queued before any is awaited: one batch, one transaction, one trip to the writer.
        futures = [self._writes.queue(statement) for statement in statements]
        results = [await future for future in futures]
        assert all(result is not None for result in results)
        return cast(list[tuple[int, list[Row]]], results)

    async def _flush_writes(
        self, items: Sequence[tuple[str, Params] | _Steps]
    ) -> list[tuple[int, list[Row]] | None]:
        def work(conn: sqlite3.Connection) -> list[tuple[int, list[Row]] | None]:
            results: list[tuple[int, list[Row]] | None] = []
            for item in items:
                if isinstance(item, _Steps):
                    for sql, rows in item.steps:
                        if rows:
                            conn.executemany(sql, rows)
                    results.append(None)
                    continue
                cursor = conn.execute(*item)
                rows = cursor.fetchall()  # before rowcount: RETURNING counts rows as read
                results.append((cursor.rowcount, rows))
            return results

        # The delivery log's batches hold inserts and updates by key or by index: keyed too.
        keyed = all(isinstance(item, _Steps) or item[0] in KEYED_STATEMENTS for item in items)
        return await self._write_soon(work, keyed=keyed)

    async def _write_batch(self, steps: Sequence[tuple[str, Sequence[Params]]]) -> None:
        await self._writes.submit(_Steps(steps))

    def outbound_slots(self) -> None:
        # One process per file is the SQLite deployment: the limiter's slots stay in memory,
        # no write (and no trip to the writer thread) per PassKit call.
        return None

    async def migrate(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(migrations.render(migrations.CREATE_MIGRATIONS_TABLE, "sqlite"))
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, statements in migrations.pending(applied, "sqlite"):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

        # BEGIN IMMEDIATE serialises two processes migrating the same file at once.
        await self._on(self._writer, lambda: self._transaction(work))

    async def _close(self) -> None:
        await self._writes.aclose()
        read_conn, write_conn = self._read_conn, self._write_conn
        self._read_conn = self._write_conn = None
        if read_conn is not None and read_conn is not write_conn:
            await self._on(self._reader, read_conn.close)
        if write_conn is not None:
            await self._on(self._writer, write_conn.close)
        self._reader.shutdown(wait=False)
        self._writer.shutdown(wait=False)

"""Storage tests, run unchanged against SQLite and a real PostgreSQL.

The `store` fixture is parametrised over both backends. PostgreSQL comes from
RELAY_TEST_DATABASE_URL (`eval "$(scripts/ci-postgres)"` installs, starts and points at one);
each test gets a fresh schema through `search_path`, dropped afterwards. Without the variable
the PostgreSQL half skips locally and fails in CI, where it must run.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from relay.redact import MASK
from relay.store import (
    DAY,
    Claim,
    Completion,
    DeliveryRecord,
    HookRecord,
    Store,
    new_delivery_id,
    open_store,
    redact,
    sqlite_path,
)
from relay.store.migrations import MIGRATIONS
from relay.store.sql import SQLStore

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # a fixed "now": tests pass times explicitly instead of sleeping


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def delivery(at: float = T0, **changes: Any) -> DeliveryRecord:
    record = DeliveryRecord(
        at=at,
        source="hook",
        hook_id="hk_a",
        template="member-enrol",
        operation="members.enrol",
        outcome="ok",
        status=200,
        latency_ms=12.5,
        request_id="req_" + secrets.token_hex(4),
        request={"email": "ana@example.com"},
        passkit_request={"method": "POST", "path": "/members/member", "json": {"x": 1}},
        passkit_response={"id": "m1"},
    )
    return replace(record, **changes)


# -- migrations and connection -------------------------------------------------------------


async def test_migrations_are_idempotent(store: Store) -> None:
    await store.migrate()
    await store.migrate()
    assert isinstance(store, SQLStore)
    versions = await store._read("SELECT version FROM schema_migrations ORDER BY version", {})
    assert versions == [(v,) for v, _ in MIGRATIONS]
    assert await store.ping()


async def test_two_processes_migrating_at_once(database_url: str) -> None:
    first = await open_store(database_url, migrate=False)
    second = await open_store(database_url, migrate=False)
    try:
        await asyncio.gather(first.migrate(), second.migrate())
        await first.add_hook(HookRecord(id="hk_a", template="member-enrol", created_at=T0))
        assert (await second.get_hook("hk_a")) is not None
    finally:
        await first.close()
        await second.close()


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///relay.db") == "relay.db"
    assert sqlite_path("sqlite:////var/data/relay.db") == "/var/data/relay.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ValueError, match=r"sqlite:///relay\.db"):
        sqlite_path("sqlite://relay.db")


async def test_memory_database_and_bad_urls() -> None:
    memory = await open_store("sqlite:///:memory:")
    try:
        await memory.add_hook(HookRecord(id="hk_m", template="member-enrol", created_at=T0))
        assert [h.id for h in await memory.list_hooks()] == ["hk_m"]
    finally:
        await memory.close()
    with pytest.raises(ValueError, match="DATABASE_URL"):
        await open_store("mysql://localhost/relay")


async def test_sqlite_checkpoints_beside_the_writer_and_keeps_the_wal_small(
    tmp_path: Path,
) -> None:
    """The WAL is copied back into the database on the reader's thread, not inside a delivery's
    commit (SQLite's automatic checkpoint made one commit in a hundred wait ms for it); it is
    still done often enough that the WAL file does not grow with the log."""
    from relay.store import sqlite as backend

    path = tmp_path / "relay.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, backend.SQLiteStore)
    threads: list[str] = []
    checkpoint = store._checkpoint

    def watched() -> None:
        threads.append(threading.current_thread().name)
        checkpoint()

    store._checkpoint = watched  # type: ignore[method-assign]
    try:
        writer = store._write_conn
        assert writer is not None
        autocheckpoint = writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert autocheckpoint == backend.WAL_BACKSTOP_PAGES
        for n in range(20 * backend.CHECKPOINT_EVERY):  # ~4,000 pages of WAL, one commit each
            await store.record_delivery(delivery(at=T0 + n, request={"note": "x" * 8000}))
        await asyncio.sleep(0.2)  # the last checkpoint queued on the reader finishes
    finally:
        await store.close()
    assert len(threads) >= 10 and set(threads) == {threads[0]}
    assert threads[0].startswith("relay-sqlite-reader")
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size < 8 * 1024 * 1024, wal.stat().st_size


async def test_sqlite_writes_never_hold_the_event_loop_while_another_process_writes(
    tmp_path: Path,
) -> None:
    """A delivery's short writes run on the loop's own thread when the writer's thread is idle
    (cheaper than the trip to it); but when another process holds SQLite's write lock (a
    `relay erase` from the console's shell, say), they must wait for it on the writer's thread,
    with the loop still answering, and then land: none fails and none is lost."""
    import sqlite3

    from relay.store import sqlite as backend

    path = tmp_path / "relay.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, backend.SQLiteStore)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.record_delivery(delivery(at=T0))  # the lock free: written at once
        other.execute("BEGIN IMMEDIATE")  # another process takes the write lock
        writes = asyncio.gather(
            store.record_delivery(delivery(at=T0 + 1, request_id="req_waited")),
            store.claim("hk_a", "key-waited", T0 + 1),
        )
        ticks = 0
        for _ in range(20):  # the loop keeps turning while both writes wait for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not writes.done()
        other.execute("COMMIT")
        delivery_id, claim = await asyncio.wait_for(writes, 5)
        assert claim.won
        got = await store.get_delivery(delivery_id)
        assert got is not None and got.request_id == "req_waited"
        # The lock is free again: the next writes go straight through.
        assert (await store.claim("hk_a", "key-after", T0 + 2)).won
    finally:
        other.close()
        await store.close()


async def test_sqlite_writes_give_up_on_a_lock_never_released_with_sqlites_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection keeps SQLite's busy timeout at 0 (the loop's batches must never
    wait) and its thread waits for another process's lock itself: up to BUSY_TIMEOUT_MS, with
    the loop turning meanwhile, then SQLite's "database is locked", as before; nothing of the
    batch is half-written, and once the lock is free the store writes again."""
    import sqlite3

    from relay.store import sqlite as backend

    monkeypatch.setattr(backend, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "relay.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, backend.SQLiteStore)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        writer = store._write_conn
        assert writer is not None
        assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        other.execute("BEGIN IMMEDIATE")
        started = asyncio.get_running_loop().time()
        write = asyncio.ensure_future(store.claim("hk_a", "key-locked", T0))
        ticks = 0
        while not write.done():
            await asyncio.sleep(0.01)
            ticks += 1
        waited = asyncio.get_running_loop().time() - started
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            write.result()
        assert 0.3 <= waited < 2.0 and ticks >= 20, (waited, ticks)
        other.execute("ROLLBACK")
        assert (await store.claim("hk_a", "key-locked", T0 + 1)).won  # nothing was left held
    finally:
        other.close()
        await store.close()


# -- hook registry -------------------------------------------------------------------------


async def test_hooks_add_list_revoke(store: Store) -> None:
    first = HookRecord(
        id="hk_a", template="member-enrol", params={"program_id": "p1"}, label="CRM", created_at=T0
    )
    await store.add_hook(first)
    await store.add_hook(HookRecord(id="hk_b", template="coupon-issue", created_at=T0 + 1))
    assert await store.get_hook("hk_a") == first
    assert await store.get_hook("hk_nope") is None
    assert [h.id for h in await store.list_hooks()] == ["hk_b", "hk_a"]

    assert await store.revoke_hook("hk_a", T0 + 5)
    assert not await store.revoke_hook("hk_a", T0 + 6), "already revoked"
    assert not await store.revoke_hook("hk_unknown", T0 + 6), "unknown ids are not invented"
    revoked = await store.get_hook("hk_a")
    assert revoked is not None and revoked.revoked and revoked.revoked_at == T0 + 5
    assert await store.revoked_hooks() == {"hk_a": T0 + 5}
    assert [h.id for h in await store.list_hooks(include_revoked=False)] == ["hk_b"]

    # A verified token whose row was lost with the database is registered as revoked.
    assert await store.revoke_hook("hk_lost", T0 + 7, template="member-update", params={"a": "1"})
    lost = await store.get_hook("hk_lost")
    assert lost is not None and lost.template == "member-update" and lost.params == {"a": "1"}
    assert not await store.revoke_hook("hk_lost", T0 + 8, template="member-update")
    assert (await store.revoked_hooks()).keys() == {"hk_a", "hk_lost"}


async def test_deliveries_count_on_their_hook(store: Store) -> None:
    await store.add_hook(HookRecord(id="hk_a", template="member-enrol", created_at=T0))
    await store.record_delivery(delivery(T0 + 10))
    await store.record_delivery(delivery(T0 + 20, outcome="failed", status=422))
    await store.record_delivery(delivery(T0 + 15))
    hook = await store.get_hook("hk_a")
    assert hook is not None
    assert (hook.deliveries, hook.failures, hook.last_used_at) == (3, 1, T0 + 20)

    # Used but never registered (the database was lost): registered from the delivery.
    await store.record_delivery(delivery(T0 + 30, hook_id="hk_new", template="coupon-issue"))
    await store.record_delivery(delivery(T0 + 31, hook_id="hk_s", source="stripe", template="x"))
    new = await store.get_hook("hk_new")
    assert new is not None and (new.template, new.deliveries, new.created_at) == (
        "coupon-issue",
        1,
        T0 + 30,
    )
    stripe = await store.get_hook("hk_s")
    assert stripe is not None and stripe.template == "stripe"


# -- idempotency ---------------------------------------------------------------------------


async def test_claim_complete_replay(store: Store) -> None:
    claim = await store.claim("hk_a", "key-1", T0)
    assert claim.won
    assert (await store.claim("hk_a", "key-1", T0 + 1)).busy
    assert (await store.claim("hk_b", "key-1", T0 + 1)).won, "keys are scoped to the hook"
    assert await store.complete(claim, 200, '{"ok":true}')
    replay = await store.claim("hk_a", "key-1", T0 + 2)
    assert (replay.state, replay.status, replay.body) == ("done", 200, '{"ok":true}')
    assert not await store.complete(replay, 500, "{}"), "only the owner completes"


async def test_two_keys_claimed_at_once_each_get_their_own_answer(store: Store) -> None:
    """A delivery claims its key and its create key in one trip. When both are new that is one
    statement, both won; when either has a row, each is decided as a single claim would be:
    a done answer replays, a live holder stays busy, a stale one is taken over, and a new key
    beside them is still won."""
    assert isinstance(store, SQLStore)
    both = await store.claims([("hk_a", "k1", ()), ("create", "c1", ("ana@example.com",))], T0)
    assert [c.state for c in both] == ["won", "won"]
    assert len({c.owner for c in both}) == 2
    assert await store.complete(both[0], 200, '{"id":"m1"}')
    again = await store.claims([("hk_a", "k1", ()), ("create", "c2", ())], T0 + 1)
    assert [(c.state, c.body) for c in again] == [("done", '{"id":"m1"}'), ("won", None)]
    busy = await store.claims([("create", "c1", ()), ("hk_a", "k3", ())], T0 + 2)
    assert [c.state for c in busy] == ["busy", "won"] and busy[0].owner == both[1].owner
    taken = await store.claims([("create", "c1", ()), ("hk_a", "k4", ())], T0 + 120)
    assert [c.state for c in taken] == ["won", "won"] and taken[0].owner != both[1].owner
    assert not await store.complete(both[1], 200, "{}"), "the stale holder lost its claim"
    replay = await store.claim("hk_a", "k1", T0 + 3)
    assert (replay.state, replay.status, replay.body) == ("done", 200, '{"id":"m1"}')


async def test_answers_are_stored_in_the_log_entrys_transaction(store: Store) -> None:
    assert isinstance(store, SQLStore)
    keyed = await store.claim("hk_a", "key-1", T0)
    create = await store.claim("create", "enrol-key", T0)
    lost = await store.claim("hk_a", "key-2", T0)
    taken = await store.claim("hk_a", "key-2", T0 + 120)  # stale: another delivery took it
    assert keyed.won and create.won and taken.won and taken.owner != lost.owner
    singles: list[str] = []
    batches: list[list[str]] = []
    write, write_batch = store._write, store._write_batch

    async def single(sql: str, params: Any) -> Any:
        singles.append(sql)
        return await write(sql, params)

    async def batch(steps: Any) -> None:
        batches.append([sql for sql, rows in steps if rows])
        await write_batch(steps)

    store._write, store._write_batch = single, batch  # type: ignore[method-assign]
    done = [
        Completion(keyed, 200, '{"ok":true}'),
        Completion(create, 200, '{"id":"m1"}', ("ana@example.com",)),
        Completion(lost, 200, '{"stale":true}'),
    ]
    await store.record_delivery(delivery(), completions=done)
    assert singles == [] and len(batches) == 1, "one transaction"
    assert [sql.split()[:2] for sql in batches[0]][:1] == [["INSERT", "INTO"]]
    assert any(sql.startswith("UPDATE idempotency") for sql in batches[0])
    replay = await store.claim("hk_a", "key-1", T0 + 1)
    assert (replay.state, replay.status, replay.body) == ("done", 200, '{"ok":true}')
    assert (await store.claim("create", "enrol-key", T0 + 1)).body == '{"id":"m1"}'
    assert (await store.claim("hk_a", "key-2", T0 + 121)).busy, "the taker's claim untouched"


async def test_release_then_reclaim(store: Store) -> None:
    claim = await store.claim("hk_a", "key-1", T0)
    await store.release(claim)
    again = await store.claim("hk_a", "key-1", T0 + 1)
    assert again.won and again.owner != claim.owner
    await store.release(claim)  # a stale owner's release does not free the new claim
    assert (await store.claim("hk_a", "key-1", T0 + 2)).busy


async def test_expiry_and_purge(store: Store) -> None:
    claim = await store.claim("hk_a", "old", T0)
    await store.complete(claim, 200, "{}")
    newer = await store.claim("hk_a", "new", T0 + 6 * DAY)
    await store.complete(newer, 200, "{}")
    assert (await store.claim("hk_a", "old", T0 + 6 * DAY)).done
    assert (await store.claim("hk_a", "old", T0 + 7 * DAY + 1)).won, "expired after 7 days"
    assert (await store.claim("hk_a", "new", T0 + 7 * DAY + 1, ttl=3600)).won, "custom window"

    assert await store.purge_idempotency(T0 + 10 * DAY) == 2
    assert await store.purge_idempotency(T0 + 10 * DAY) == 0


async def test_stale_pending_claim_is_taken_over(store: Store) -> None:
    dead = await store.claim("hk_a", "key-1", T0)
    assert (await store.claim("hk_a", "key-1", T0 + 59)).busy
    taken = await store.claim("hk_a", "key-1", T0 + 61)
    assert taken.won
    assert not await store.complete(dead, 200, '{"late":true}'), "the dead owner lost it"
    assert await store.complete(taken, 200, '{"ok":true}')
    assert (await store.claim("hk_a", "key-1", T0 + 62)).body == '{"ok":true}'


async def test_concurrent_duplicates_run_once(store: Store) -> None:
    ran = 0

    async def request() -> Claim:
        nonlocal ran
        claim = await store.claim("hk_a", "same-key", T0)
        if claim.busy:
            claim = await store.wait_for("hk_a", "same-key", timeout=10, clock=lambda: T0)
        if claim.won:
            ran += 1
            await asyncio.sleep(0.1)  # the PassKit call
            await store.complete(claim, 200, '{"id":"m1"}')
        return claim

    claims = await asyncio.gather(*(request() for _ in range(50)))
    assert ran == 1
    assert sorted(c.state for c in claims) == ["done"] * 49 + ["won"]
    assert {c.body for c in claims if c.done} == {'{"id":"m1"}'}


async def test_wait_for_times_out_or_takes_over_a_released_key(store: Store) -> None:
    held = await store.claim("hk_a", "k", T0)
    waited = await store.wait_for("hk_a", "k", timeout=0.15, poll=0.02, clock=lambda: T0)
    assert waited.busy

    async def fail_later() -> None:
        await asyncio.sleep(0.1)
        await store.release(held)  # e.g. PassKit answered 503: the retry must run again

    releaser = asyncio.create_task(fail_later())
    waited = await store.wait_for("hk_a", "k", timeout=5, poll=0.02, clock=lambda: T0)
    await releaser
    assert waited.won


async def test_stripe_event_ids(store: Store) -> None:
    scope = "stripe:hk_s"
    refused = await store.claim(scope, "evt_1", T0)
    assert refused.won
    await store.release(refused)  # a refused delivery never marks the event as seen
    retried = await store.claim(scope, "evt_1", T0 + 60)
    assert retried.won
    await store.complete(retried, 200, '{"ok":true}')
    assert (await store.claim(scope, "evt_1", T0 + 120)).done


# -- delivery log --------------------------------------------------------------------------


async def test_record_and_get_delivery(store: Store) -> None:
    record = delivery(error_code=None, replay_of="dl_original")
    delivery_id = await store.record_delivery(record)
    assert delivery_id.startswith("dl_")
    assert await store.get_delivery(delivery_id) == replace(record, id=delivery_id)
    assert await store.get_delivery("dl_missing") is None
    given = delivery(id="dl_given", request=None, passkit_request=None, passkit_response=None)
    assert await store.record_delivery(given) == "dl_given"
    assert await store.get_delivery("dl_given") == given


async def test_list_filter_paginate_stats_purge(store: Store) -> None:
    for i in range(25):
        await store.record_delivery(
            delivery(
                T0 + i,
                hook_id="hk_a" if i % 2 else "hk_b",
                outcome="failed" if i % 5 == 0 else "ok",
                status=422 if i % 5 == 0 else 200,
                latency_ms=float(i + 1),
                error_code="missing_field" if i % 5 == 0 else None,
            )
        )
    newest = await store.list_deliveries()
    assert [d.at for d in newest] == [T0 + i for i in range(24, -1, -1)]

    pages: list[float] = []
    before: str | None = None
    while page := await store.list_deliveries(limit=10, before_id=before):
        pages += [d.at for d in page]
        before = page[-1].id
    assert pages == [d.at for d in newest]

    assert {d.hook_id for d in await store.list_deliveries(hook_id="hk_a")} == {"hk_a"}
    assert len(await store.list_deliveries(hook_id="hk_a")) == 12
    failed = await store.list_deliveries(outcome="failed")
    assert [d.at for d in failed] == [T0 + 20, T0 + 15, T0 + 10, T0 + 5, T0]
    window = await store.list_deliveries(since=T0 + 10, until=T0 + 15, hook_id="hk_b")
    assert [d.at for d in window] == [T0 + 14, T0 + 12, T0 + 10]
    assert await store.list_deliveries(source="stripe") == []

    stats = await store.delivery_stats(T0)
    assert (stats.total, stats.ok, stats.failed) == (25, 20, 5)
    assert (stats.p50_ms, stats.p95_ms) == (13.0, 24.0)
    assert (await store.delivery_stats(T0 + 20, hook_id="hk_a")).total == 2
    empty = await store.delivery_stats(T0 + 100)
    assert (empty.total, empty.p50_ms) == (0, None)

    assert await store.purge_deliveries(T0 + 10) == 10
    assert len(await store.list_deliveries(limit=100)) == 15


async def test_group_commit_lands_every_concurrent_delivery(store: Store) -> None:
    assert isinstance(store, SQLStore)
    batches: list[int] = []
    write_batch = store._write_batch

    async def counting(steps: Any) -> None:
        batches.append(len(steps[0][1]))
        await write_batch(steps)

    store._write_batch = counting  # type: ignore[method-assign]
    ids = await asyncio.gather(
        *(store.record_delivery(delivery(T0 + i / 1000)) for i in range(400))
    )
    assert len(set(ids)) == 400
    assert sum(batches) == 400 and len(batches) < 400, "deliveries shared transactions"
    assert len(await store.list_deliveries(limit=1000)) == 400
    hook = await store.get_hook("hk_a")
    assert hook is not None and hook.deliveries == 400


async def test_a_bad_row_fails_only_its_own_caller(store: Store) -> None:
    await store.record_delivery(delivery(id="dl_taken"))
    results = await asyncio.gather(
        store.record_delivery(delivery(T0 + 1)),
        store.record_delivery(delivery(T0 + 2, id="dl_taken")),
        store.record_delivery(delivery(T0 + 3)),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception)
    assert all(isinstance(r, str) for r in (results[0], results[2]))
    assert len(await store.list_deliveries()) == 3


def test_delivery_ids_sort_by_time() -> None:
    ids = [new_delivery_id(T0 + i / 1_000_000) for i in range(100)]
    assert ids == sorted(ids)


# -- admin sessions ------------------------------------------------------------------------


async def test_ended_admin_sessions_are_remembered_then_purged(store: Store) -> None:
    assert not await store.admin_session_ended("s1")
    await store.end_admin_session("s1", T0)
    await store.end_admin_session("s1", T0 + 50)  # signed out twice: the first time stays
    await store.end_admin_session("s2", T0 + 100)
    assert await store.admin_session_ended("s1") and await store.admin_session_ended("s2")
    assert not await store.admin_session_ended("s3")

    assert await store.purge_ended_admin_sessions(T0 + 10) == 1
    assert not await store.admin_session_ended("s1")
    assert await store.admin_session_ended("s2")
    assert await store.purge_ended_admin_sessions(T0 + 10) == 0


async def test_a_version_2_database_gains_the_admin_sessions_table(store: Store) -> None:
    assert isinstance(store, SQLStore)
    await store._write("DROP TABLE admin_sessions_ended", {})  # as released before migration 3
    await store._write("DELETE FROM schema_migrations WHERE version = 3", {})
    await store.add_hook(HookRecord(id="hk_a", template="member-enrol", created_at=T0))
    await store.migrate()
    await store.end_admin_session("s1", T0)
    assert await store.admin_session_ended("s1")
    assert await store.get_hook("hk_a") is not None


# -- several processes on one database -----------------------------------------------------


async def test_two_instances_share_revocations_and_claims(database_url: str) -> None:
    one = await open_store(database_url)
    two = await open_store(database_url)
    try:
        await one.add_hook(HookRecord(id="hk_a", template="member-enrol", created_at=T0))
        assert await two.revoked_hooks() == {}
        assert await two.revoke_hook("hk_a", T0 + 1)
        assert await one.revoked_hooks() == {"hk_a": T0 + 1}

        claim = await one.claim("hk_a", "k", T0)
        assert (await two.claim("hk_a", "k", T0)).busy
        await one.complete(claim, 201, '{"id":"m1"}')
        assert (await two.wait_for("hk_a", "k", timeout=1, clock=lambda: T0)).body == '{"id":"m1"}'

        await one.record_delivery(delivery())
        assert len(await two.list_deliveries()) == 1

        await two.end_admin_session("sess-1", T0)
        assert await one.admin_session_ended("sess-1"), "a sign-out counts in every process"
    finally:
        await one.close()
        await two.close()


KILL_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from relay.store import DeliveryRecord, open_store

    async def main():
        store = await open_store(sys.argv[1])
        n = 0
        async def one(i):
            record = DeliveryRecord(at=1.0 + i, source="hook", hook_id="hk_k", template="t",
                operation="members.enrol", outcome="ok", status=200, latency_ms=1.0,
                request_id=f"r{i}", request={"i": i})
            delivery_id = await store.record_delivery(record)
            print(delivery_id, flush=True)  # "answered 2xx": only after the record is durable
        while True:
            await asyncio.gather(*(one(n + i) for i in range(20)))
            n += 20

    asyncio.run(main())
    """
)


async def test_kill_9_loses_no_answered_delivery(database_url: str) -> None:
    await (await open_store(database_url)).close()  # migrated before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, database_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    answered: list[str] = []
    try:
        assert child.stdout is not None
        while len(answered) < 300:
            line = await asyncio.to_thread(child.stdout.readline)
            assert line, "the child stopped before recording anything"
            answered.append(line.strip())
        child.send_signal(signal.SIGKILL)  # mid-load: more batches are in flight
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    store = await open_store(database_url)
    try:
        for delivery_id in answered:
            assert await store.get_delivery(delivery_id) is not None, delivery_id
    finally:
        await store.close()


# -- redaction -----------------------------------------------------------------------------

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1aWQiOiJhYmMifQ.c2lnbmF0dXJlLWJ5dGVz"


def test_redaction_leaves_no_secret() -> None:
    payload = {
        "email": "ana@example.com",
        "Authorization": "Bearer abc.def",
        "headers": {"X-Relay-Token": "tok-9f3", "Stripe-Signature": "t=1,v1=9ab", "accept": "*/*"},
        "api_key": "k1-zz",
        "Client Secret": "cs_1",
        "nested": [{"password": "hunter2"}, {"note": f"jwt {JWT} and sk_live_51Habc here"}],
        "text": "whsec_abc123 sk_test_XYZ rk_live_Q bearer zzz",
        "url": "https://relay.example.com/hooks/eyJpIjoiaGtfYSJ9.sig-nature_x",
        "empty_token": "",
        "points": 5,
    }
    clean = redact(payload)
    flat = repr(clean)
    for secret in (
        "abc.def",
        "tok-9f3",
        "v1=9ab",
        "k1-zz",
        "cs_1",
        "hunter2",
        JWT,
        "sk_live_51Habc",
    ):
        assert secret not in flat, secret
    for secret in ("whsec_abc123", "sk_test_XYZ", "rk_live_Q", "zzz", "eyJpIjoiaGtfYSJ9"):
        assert secret not in flat, secret
    assert clean["email"] == "ana@example.com" and clean["points"] == 5
    assert clean["headers"]["accept"] == "*/*" and clean["headers"]["X-Relay-Token"] == MASK
    assert clean["nested"][1]["note"] == f"jwt {MASK} and {MASK} here"
    assert clean["url"] == f"https://relay.example.com/hooks/{MASK}"
    assert payload["api_key"] == "k1-zz", "the input is not modified"


def test_redaction_can_keep_no_payload() -> None:
    assert redact({"email": "ana@example.com"}, store_payloads=False) is None
    assert redact(["sk_live_1"]) == [MASK]
    assert redact(None) is None


async def test_hourly_counts_for_the_chart(store: Store) -> None:
    for at, outcome in [(T0 + 10, "ok"), (T0 + 20, "failed"), (T0 + 3700, "ok"), (T0 - 5, "ok")]:
        await store.record_delivery(delivery(at, outcome=outcome))
    assert await store.delivery_hours(T0) == {0: {"ok": 1, "failed": 1}, 1: {"ok": 1}}


async def test_failures_group_by_error_and_field_across_hooks(store: Store) -> None:
    failed = {"outcome": "failed", "status": 422, "error_code": "invalid_field"}
    for n in range(3):
        await store.record_delivery(delivery(T0 + n, error_field="points", **failed))
    await store.record_delivery(delivery(T0 + 5, error_field="email", **failed))
    await store.record_delivery(delivery(T0 + 6, hook_id="hk_b", error_field="points", **failed))
    for n in range(2):  # no field: grouped together (NULLs group in both databases)
        await store.record_delivery(
            delivery(T0 + 7 + n, outcome="failed", status=503, error_code="passkit_unavailable")
        )
    await store.record_delivery(delivery(T0 + 10))  # a success is no failure
    await store.record_delivery(delivery(T0 - 100, error_field="points", **failed))  # too old
    groups = await store.failure_groups(T0 - 1)
    shape = [(g.newest.hook_id, g.newest.error_code, g.newest.error_field, g.count)
             for g in groups]  # fmt: skip
    assert shape == [  # one cause, whichever hook: hk_b's failure joins hk_a's three
        ("hk_a", "passkit_unavailable", None, 2),
        ("hk_b", "invalid_field", "points", 4),
        ("hk_a", "invalid_field", "email", 1),
    ]
    points = groups[1]
    assert (points.first_at, points.last_at) == (T0, T0 + 6)
    assert len(await store.failure_groups(T0 - 1, limit=2)) == 2
    in_group = await store.list_deliveries(
        hook_id="hk_a", outcome="failed", error_code="invalid_field", error_field="points"
    )
    assert [d.at for d in in_group] == [T0 + 2, T0 + 1, T0, T0 - 100]
    no_field = await store.list_deliveries(error_code="passkit_unavailable", error_field="")
    assert len(no_field) == 2 and all(d.error_field is None for d in no_field)


def test_relays_opening_one_new_sqlite_file_together_all_get_in(tmp_path: Path) -> None:
    """Two relays starting at once on a new file both switch it to WAL: SQLite refuses the
    loser at once ("database is locked", no busy timeout), which used to fail its first
    delivery with a 500."""
    import threading

    from relay.store.sqlite import _connect

    for trial in range(40):
        path = str(tmp_path / f"relay-{trial}.db")
        failures: list[BaseException] = []

        def connect(path: str = path, failures: list[BaseException] = failures) -> None:
            try:
                _connect(path).close()
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=connect) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, (trial, failures)


async def test_the_last_real_event_of_a_hook_is_not_a_sample(store: Store) -> None:
    from relay.store import PassKitEvent

    assert await store.last_real_event("hk_a") is None
    for ident, hook, at in (("evt_1", "hk_a", T0), ("evt_2", "hk_a", T0 + 5),
                            ("smp_3", "hk_a", T0 + 9), ("evt_4", "hk_b", T0 + 9)):  # fmt: skip
        event = PassKitEvent(ident, hook, "installed", at, "https://x.example/c", {"points": 5})
        assert await store.enqueue_event(event)
    last = await store.last_real_event("hk_a")
    assert last is not None and last.id == "evt_2"  # the sample and the other hook's left out
    assert last.body == {"points": 5}  # a number stays a number


async def test_group_commit_gathers_what_the_next_loop_turn_queues_into_one_batch() -> None:
    """A write queued by a delivery that runs in the loop turn after the first write shares the
    first one's commit (under load that halves the commits: each is ~300 µs of SQLite's work);
    every caller still returns only once its own write is committed."""
    from relay.store.batch import GroupCommit

    batches: list[list[str]] = []

    async def flush(items: Sequence[str]) -> None:
        batches.append(list(items))

    group: GroupCommit[str, None] = GroupCommit(flush)

    async def one_turn_later(item: str) -> None:
        await asyncio.sleep(0)
        await group.submit(item)
        assert any(item in batch for batch in batches), "returned before its commit"

    await asyncio.gather(group.submit("a"), one_turn_later("b"))
    await group.aclose()
    assert batches == [["a", "b"]]


async def test_group_commit_splits_at_its_batch_limit_and_closes_only_after_what_was_queued():
    from relay.store.batch import GroupCommit

    batches: list[list[str]] = []

    async def flush(items: Sequence[str]) -> list[str]:
        batches.append(list(items))
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(flush, max_batch=2)
    futures = [group.queue(item) for item in "abcde"]
    closing = asyncio.ensure_future(group.aclose())  # asked while all five are still queued
    assert [await future for future in futures] == ["A", "B", "C", "D", "E"]
    await closing
    assert batches == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(RuntimeError, match="closed"):
        group.queue("f")

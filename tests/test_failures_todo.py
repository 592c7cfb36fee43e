"""Failures as a to-do list, in the store (SQLite and PostgreSQL): a failure is resolved by a
successful resend of it (its `replay_of` chain), by a later success on the same hook with the
same idempotency key (or, sent without keys, for the same person), or by Dismiss; dry runs,
skips and ignored deliveries resolve nothing, and a failed resend is not a second failure.
People are found by the blind indexes of their identifiers and of their name's words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from relay.sealing import Sealer
from relay.store import DISMISSED, DeliveryRecord, Outcome, Store, open_store
from relay.store.personal import name_index, words

from .conftest import SECRET_KEY

SEALER = Sealer.from_secrets([SECRET_KEY])
pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url, sealer=SEALER)
    try:
        yield opened
    finally:
        await opened.close()


def delivery(
    at: float, outcome: Outcome = "failed", *, hook: str = "hk_a", **more: object
) -> DeliveryRecord:
    failed = outcome == "failed"
    record = DeliveryRecord(
        at=at, source="hook", hook_id=hook, template="member-upsert", operation="member.upsert",
        outcome=outcome, status=422 if failed else 200, latency_ms=1.0, request_id=f"r{at}",
        error_code="unknown_tier" if failed else None, error_field="tier" if failed else None,
        request={"email": "ana@example.com"},
    )  # fmt: skip
    return replace(record, **more)  # type: ignore[arg-type]


async def recorded(store: Store, record: DeliveryRecord) -> DeliveryRecord:
    delivery_id = await store.record_delivery(record)
    got = await store.get_delivery(delivery_id)
    assert got is not None
    return got


async def test_a_successful_resend_resolves_the_failure_and_every_resend_before_it(
    store: Store,
) -> None:
    failure = await recorded(store, delivery(100.0))
    bad_resend = await recorded(store, delivery(110.0, replay_of=failure.id))
    assert await store.open_failures(0) == 1  # the failed resend is an attempt, not a second
    assert [g.count for g in await store.failure_groups(0)] == [1]
    fixed = await recorded(store, delivery(120.0, "ok", replay_of=bad_resend.id))
    for was in (failure, bad_resend):
        now = await store.get_delivery(was.id)
        assert now is not None and now.resolved_by == fixed.id and now.resolved_at == 120.0
    assert await store.open_failures(0) == 0
    assert await store.failure_groups(0) == []
    assert await store.list_deliveries(outcome="failed", open_only=True) == []


async def test_a_later_success_with_the_same_key_or_person_resolves_on_the_same_hook_only(
    store: Store,
) -> None:
    keyed = await recorded(store, delivery(100.0, fix_key="key order-1"))
    other_hook = await recorded(store, delivery(101.0, hook="hk_b", fix_key="key order-1"))
    by_person = await recorded(store, delivery(102.0, fix_key="person ana@example.com"))
    other_key = await recorded(store, delivery(103.0, fix_key="key order-2"))
    # Dry runs, skips, ignored deliveries and duplicates resolve nothing.
    for n, outcome in enumerate(("dry_run", "skipped", "ignored", "duplicate")):
        await recorded(store, delivery(110.0 + n, outcome, fix_key="key order-1"))  # type: ignore[arg-type]
    assert await store.open_failures(0) == 4
    ok = await recorded(store, delivery(120.0, "ok", fix_key="key order-1"))
    ok_person = await recorded(store, delivery(121.0, "ok", fix_key="person ana@example.com"))
    resolved = {d.id: d.resolved_by for d in await store.list_deliveries(outcome="failed")}
    assert resolved == {keyed.id: ok.id, by_person.id: ok_person.id, other_hook.id: None,
                        other_key.id: None}  # fmt: skip
    assert await store.open_failures(0) == 2
    # A success before a failure does not resolve it.
    late = await recorded(store, delivery(130.0, fix_key="person ana@example.com"))
    assert (await store.get_delivery(late.id)).resolved_by is None  # type: ignore[union-attr]


async def test_dismiss_resolves_an_open_failure_once(store: Store) -> None:
    failure = await recorded(store, delivery(100.0))
    assert await store.dismiss_failure(failure.id, 150.0)
    assert not await store.dismiss_failure(failure.id, 160.0)
    got = await store.get_delivery(failure.id)
    assert got is not None and got.dismissed and got.resolved_by == DISMISSED
    assert await store.open_failures(0) == 0


async def test_groups_are_by_cause_across_hooks(store: Store) -> None:
    await recorded(store, delivery(100.0, hook="hk_a"))
    await recorded(store, delivery(101.0, hook="hk_b"))
    await recorded(store, delivery(102.0, error_code="passkit_busy", error_field=None))
    groups = await store.failure_groups(0)
    assert [(g.newest.error_code, g.count) for g in groups] == [("passkit_busy", 1),
                                                                  ("unknown_tier", 2)]  # fmt: skip


async def test_people_are_found_by_blind_indexes_of_identifiers_and_name_words(
    store: Store,
) -> None:
    ana = await recorded(store, delivery(100.0, "ok", people=("ana@example.com",),
                                         names=tuple(words("Ana María Díaz"))))  # fmt: skip
    await recorded(store, delivery(101.0, "ok", people=("bo@example.com",), names=("bo",)))
    by_email = await store.deliveries_by_index([SEALER.blind("ana@example.com")])
    assert [d.id for d in by_email] == [ana.id]
    by_name = await store.deliveries_by_index([name_index(SEALER, w) for w in words("diaz ANA")])
    assert [d.id for d in by_name] == [ana.id]
    assert await store.deliveries_by_index([name_index(SEALER, "an")]) == []  # whole words
    # The words are kept only as keyed hashes: the column never holds them in clear.
    assert await store.deliveries_by_index([SEALER.blind("ana")]) == []


def test_a_success_looks_up_what_it_resolves_and_never_walks_every_failure(
    tmp_path: object,
) -> None:
    """Each success's RESOLVE runs in the log's write transaction: it must find the failures
    it fixes through indexes (the fix key's, the id's), not by reading every failure in the log
    (an OR beside the replay chain once made SQLite do that, for every success)."""
    import asyncio
    import sqlite3
    from pathlib import Path

    from relay.store import queries as q

    path = Path(str(tmp_path)) / "plan.db"

    async def migrate() -> None:
        await (await open_store(f"sqlite:///{path}")).close()

    asyncio.run(migrate())
    with sqlite3.connect(path) as conn:
        params = {"id": "d2", "at": 1.0, "replay_of": "d1", "hook_id": "hk", "fix_key": "k"}
        plans = [
            [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            for sql in (q.RESOLVE, q.RESOLVE_FIXED)  # a resend's, and every other success's
        ]
    for plan in plans:
        assert any("deliveries_fix (hook_id=? AND fix_key=?)" in step for step in plan), plan
        assert not any(step.endswith("(outcome=?)") or step.startswith("SCAN deliveries")
                       for step in plan), plan  # fmt: skip


def test_the_log_finds_people_and_name_words_in_one_walk_as_each_alone_does() -> None:
    """The journal takes a delivery's people and name words in one walk (people_and_names):
    the same identifiers and words, in the same order, as people_in and name_words."""
    from relay.store.personal import name_words, people_and_names, people_in

    values = [
        {"external_id": " CRM-1 ", "email": "ana@example.com", "first_name": "Ana María",
         "last_name": "Díaz", "points": "10", "meta_store": "Soho"},
        {"programId": "p1", "person": {"emailAddress": "ana@example.com", "forename": "Ana",
                                       "surname": "Díaz-Ortega", "mobileNumber": "+447700900123"},
         "externalId": "CRM-1", "list": [{"email": "bo@example.com", "name": "Bo Li"}, 3, None]},
        {"data": {"object": {"customer": "cus_1", "customer_details": {"email": "c@x.io",
                                                                       "name": "Cy Ng"}}}},
        {"email": "", "first_name": 5, "surname": ["not", "a", "string"]},
        None, "text", [],
    ]  # fmt: skip
    for value in values:
        assert people_and_names(value) == (people_in(value), name_words(value)), value

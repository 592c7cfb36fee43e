"""Traps a zap can fall into that used to look like success: a constant idempotency key (the
second person got the first person's pass) and Zapier's GET action (a green test, no pass)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from relay.delivery.idempotency import DIGEST, InProgress, fields_digest
from relay.delivery.services import sealer_for
from relay.store import Store

from .conftest import FROZEN_NOW, make_settings, mint

pytestmark = pytest.mark.anyio

HOOK_ID = "hk_test000001"  # conftest.mint's default
ENROL = mint("member-enrol", program_id="p1", tier_id="base")
ANA = {"external_id": "CRM-1", "email": "ana@example.com", "first_name": "Ana"}
BO = {"external_id": "CRM-2", "email": "bo@example.com", "first_name": "Bo"}


@pytest.fixture
def client(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(store=store)


@pytest.fixture
def enrol(passkit: respx.MockRouter) -> respx.Route:
    return passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))


async def test_a_key_reused_for_other_fields_is_refused_and_nothing_is_sent(
    client: httpx.AsyncClient, enrol: respx.Route, store: Store
) -> None:
    first = await client.post(ENROL, data={**ANA, "idempotency_key": "zap"})
    assert first.status_code == 200 and first.json()["duplicate"] is False
    second = await client.post(ENROL, data={**BO, "idempotency_key": "zap"})
    assert second.status_code == 422, second.text
    error = second.json()["error"]
    assert error["code"] == "idempotency_key_reused" and error["field"] == "idempotency_key"
    assert "id of the record that triggered the zap, not a constant" in error["hint"]
    assert "m1" not in second.text  # the first person's pass is not answered
    assert enrol.call_count == 1  # Bo's delivery never reached PassKit
    [refused] = await store.list_deliveries(outcome="failed")
    assert refused.error_code == "idempotency_key_reused"
    # The header carries the key the same way.
    header = await client.post(ENROL, data=BO, headers={"Idempotency-Key": "zap"})
    assert header.status_code == 422 and enrol.call_count == 1


async def test_a_refused_reused_key_leaves_the_other_persons_pass_free_to_issue(
    client: httpx.AsyncClient, enrol: respx.Route, store: Store
) -> None:
    """Bo's create key is claimed with the reused key, in one trip, before the reuse is found:
    the refusal must free it, or Bo's own next delivery would wait for a claim nobody holds."""
    await client.post(ENROL, data={**ANA, "idempotency_key": "zap"})
    refused = await client.post(ENROL, data={**BO, "idempotency_key": "zap"})
    assert refused.status_code == 422
    fixed = await client.post(ENROL, data={**BO, "idempotency_key": "bo-1"})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["duplicate"] is False and enrol.call_count == 2


async def test_the_same_key_with_the_same_fields_is_still_a_duplicate(
    client: httpx.AsyncClient, enrol: respx.Route
) -> None:
    first = await client.post(ENROL, data={**ANA, "idempotency_key": "rec-1"})
    # Zapier's replay: the same fields, in another order, with the key in the header.
    again = await client.post(
        ENROL, json=dict(reversed(ANA.items())), headers={"Idempotency-Key": "rec-1"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    assert DIGEST not in again.json()
    assert enrol.call_count == 1


async def test_what_is_kept_is_a_digest_not_the_fields(
    make_client: Callable[..., httpx.AsyncClient], enrol: respx.Route, tmp_path: Path
) -> None:
    from relay.store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        settings = make_settings(RELAY_LOG_PAYLOADS="off")
        async with make_client(settings, store=store) as client:
            fields = {**ANA, "first_name": "Zebediah-Quark"}
            await client.post(ENROL, data={**fields, "idempotency_key": "k"})
    finally:
        await store.close()
    kept = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert b"Zebediah-Quark" not in kept
    # The stored answer is sealed (relay.sealing); opened with the relay's key, it holds the
    # digest that tells a replay from other fields, and still not the fields.
    with sqlite3.connect(tmp_path / "keys.db") as db:
        bodies = [body for (body,) in db.execute("SELECT body FROM idempotency") if body]
    opened = [sealer_for(settings).open(body) for body in bodies]
    assert bodies and all(body.startswith("sealed:") for body in bodies)
    assert any(fields_digest(dict(fields.items())) in answer for answer in opened)
    assert not any("Zebediah-Quark" in answer for answer in opened)


async def test_a_key_stored_before_digests_replays_as_before(
    client: httpx.AsyncClient, enrol: respx.Route, store: Store
) -> None:
    key = hashlib.sha256(b"old-run").hexdigest()  # the store keeps keys as digests
    claim = await store.claim(HOOK_ID, key, FROZEN_NOW.timestamp())
    old = {"ok": True, "operation": "members.enrol", "id": "m0", "duplicate": False}
    await store.complete(claim, 200, json.dumps(old))
    answer = await client.post(ENROL, data={**BO, "idempotency_key": "old-run"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["duplicate"] is True and answer.json()["id"] == "m0"
    assert enrol.call_count == 0


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_get_with_fields_is_405_saying_pick_post(
    client: httpx.AsyncClient, enrol: respx.Route, method: str, store: Store
) -> None:
    answer = await client.request(method, ENROL, params={"email": "a@b.co", "first_name": "A"})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST, PUT"
    if method == "GET":
        error = answer.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert "POST" in error["hint"] and "Zapier" in error["hint"] and "Make" in error["hint"]
    assert enrol.call_count == 0
    [logged] = await store.list_deliveries()  # the operator sees the zap calling with GET
    assert logged.outcome == "failed" and logged.status == 405
    assert logged.error_code == "method_not_allowed" and logged.request is None


@pytest.mark.parametrize(
    "query", [{}, {"dry_run": "1"}, {"utm_source": "newsletter"}, {"fbclid": "x"}]
)
async def test_a_bare_get_still_describes_the_hook(
    client: httpx.AsyncClient, query: dict[str, str]
) -> None:
    as_json = await client.get(ENROL, params=query)
    assert as_json.status_code == 200 and as_json.json()["ok"] is True
    page = await client.get(ENROL, params=query, headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


async def test_a_get_with_fields_on_a_wrong_token_is_still_401(client: httpx.AsyncClient) -> None:
    answer = await client.get("/hooks/not-a-token", params={"email": "a@b.co"})
    assert answer.status_code == 401


async def test_a_copy_waiting_for_its_key_never_holds_the_create_key_meanwhile(
    store: Store,
) -> None:
    """Two copies of one keyed create each claim the sender's key and the create key in one
    trip. On PostgreSQL the two statements run side by side, so copy A can win the sender's
    key while copy B wins the create key: if B kept it while waiting for A, and A waited for
    it, both would wait until they gave up (503s; seen in CI). A copy that did not win the
    sender's key lets the create key go before it waits."""
    from relay.delivery.idempotency import CREATE_SCOPE, OnceGuard, _stored_key
    from relay.store.handle import StoreHandle

    guard = OnceGuard(StoreHandle(store=store), wait=1.0)
    digest, _ = _stored_key("hk_b", "run-1")
    held = await store.claim("hk_b", digest, time.time())  # copy A's
    assert held.won
    create = (CREATE_SCOPE, "member.enrol:p1:CRM-1")

    async def never() -> dict[str, Any]:
        raise AssertionError("B never runs: A holds its key")

    waiting = asyncio.create_task(guard.once("hk_b", "run-1", never, ahead=create))
    await asyncio.sleep(0.3)  # B is waiting for A's key now
    create_digest, people = _stored_key(*create)
    free = await store.claim(CREATE_SCOPE, create_digest, time.time(), people=people)
    assert free.won  # B let the create key go before it waited
    with pytest.raises(InProgress):
        await waiting  # A never finished: B gives up, as before

"""What the relay remembers, through the whole app: idempotency keys, create protection,
revocation and the delivery log (SQLite here; the storage suite runs on PostgreSQL too)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from relay.access.ratelimit import HookRateLimit
from relay.access.revocations import RevocationCache
from relay.delivery.housekeeping import purge_expired
from relay.errors import RateLimited
from relay.store import DAY, Store
from relay.store.sql import SQLStore

from .conftest import FROZEN_NOW, SHIPPED_TEMPLATES, make_settings, mint

pytestmark = pytest.mark.anyio

ENROL = mint("member-enrol", program_id="p1", tier_id="base")
EARN = mint("member-points-earn", program_id="p1")
ANA = {"external_id": "CRM-1", "email": "ana@example.com"}


@pytest.fixture
def client(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(store=store)


def enrolled(passkit: respx.MockRouter, *answers: httpx.Response) -> respx.Route:
    # A failed enrol is looked up by its external id ("already exists" is never read from
    # PassKit's words): by default PassKit has no such member.
    passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(404, json={"code": 5, "message": "member not found"})
    )
    route = passkit.post("/members/member")
    if answers:
        route.side_effect = list(answers)
    else:
        route.mock(return_value=httpx.Response(200, json={"id": "m1"}))
    return route


@pytest.mark.parametrize("how", ["header", "field"])
async def test_idempotency_key_replays_the_first_answer(
    how: str, passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = enrolled(passkit)
    kwargs: dict = (
        {"data": ANA, "headers": {"Idempotency-Key": "zap-run-1"}}
        if how == "header"
        else {"data": {**ANA, "idempotency_key": "zap-run-1"}}
    )
    first = await client.post(ENROL, **kwargs)
    second = await client.post(ENROL, **kwargs)
    assert route.call_count == 1
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert second.json()["id"] == first.json()["id"] == "m1"
    assert second.json()["pass_url"] == first.json()["pass_url"]
    assert second.json()["request_id"] == second.headers["x-request-id"]


async def test_a_keyed_enrols_answers_are_written_with_its_log_entry(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    assert isinstance(store, SQLStore)
    route = enrolled(passkit)
    trips: list[list[str]] = []  # keys claimed or statements sent together, one list a trip
    sent: list[int] = []  # how many statements each trip was
    batches: list[dict[str, int]] = []
    write, write_each, write_batch = store._write, store._write_each, store._write_batch

    def named(sql: str) -> str:  # "INSERT INTO idempotency", "UPDATE hooks", …
        return " ".join(sql.split()[:3]).replace("UPDATE idempotency SET", "complete")

    async def single(sql: str, params: Any) -> Any:
        trips.append([named(sql)] * sql.count(":scope"))  # one name a key claimed
        sent.append(1)
        return await write(sql, params)

    async def each(statements: Any) -> Any:
        trips.append([named(sql) for sql, _ in statements])
        sent.append(len(statements))
        return await write_each(statements)

    async def batch(steps: Any) -> None:
        batches.append({named(sql): len(rows) for sql, rows in steps})
        await write_batch(steps)

    store._write, store._write_each = single, each  # type: ignore[method-assign]
    store._write_batch = batch  # type: ignore[method-assign]
    first = await client.post(ENROL, data={**ANA, "idempotency_key": "zap-run-1"})
    assert first.status_code == 200, first.text
    # The two claims (the sender's key, the create's) go together, before the call, in one
    # statement; both answers travel with the log entry.
    assert trips == [["INSERT INTO idempotency"] * 2] and sent == [1]
    assert len(batches) == 1 and batches[0]["complete"] == 2
    replay = await client.post(ENROL, data={**ANA, "idempotency_key": "zap-run-1"})
    assert replay.json()["duplicate"] is True and route.call_count == 1


async def test_answers_are_kept_when_the_log_cannot_be_written(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    assert isinstance(store, SQLStore)
    route = enrolled(passkit)
    write_batch = store._write_batch

    async def broken(steps: Any) -> None:
        raise OSError("disk full")

    store._write_batch = broken  # type: ignore[method-assign]
    failed = await client.post(ENROL, data={**ANA, "idempotency_key": "zap-run-1"})
    assert failed.status_code == 500
    store._write_batch = write_batch  # type: ignore[method-assign]
    retry = await client.post(ENROL, data={**ANA, "idempotency_key": "zap-run-1"})
    assert retry.status_code == 200, retry.text
    assert retry.json()["duplicate"] is True and route.call_count == 1, "no second pass"


async def test_keys_are_scoped_to_their_hook(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = passkit.put("/members/member/points/earn").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    other = mint("member-points-earn", "hk_other00001", program_id="p1")
    data = {"external_id": "CRM-1", "points": "5", "idempotency_key": "k1"}
    for url in (EARN, other, EARN):
        assert (await client.post(url, data=data)).status_code == 200
    assert route.call_count == 2


async def test_a_failure_is_not_stored_so_a_retry_runs_again(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = enrolled(
        passkit,
        httpx.Response(400, json={"code": 3, "message": "tierId base does not exist"}),
        httpx.Response(200, json={"id": "m1"}),
    )
    data = {**ANA, "idempotency_key": "k1"}
    assert (await client.post(ENROL, data=data)).status_code == 422
    again = await client.post(ENROL, data=data)
    assert again.status_code == 200 and again.json()["duplicate"] is False
    assert route.call_count == 2


async def test_concurrent_copies_cause_one_passkit_call(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json={"id": "m1"})

    route = passkit.post("/members/member").mock(side_effect=slow)
    answers = await asyncio.gather(
        *(client.post(ENROL, data={**ANA, "idempotency_key": "same"}) for _ in range(20))
    )
    assert route.call_count == 1
    assert all(a.status_code == 200 and a.json()["id"] == "m1" for a in answers)
    assert sum(not a.json()["duplicate"] for a in answers) == 1


async def test_dry_runs_do_not_use_up_the_key(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = enrolled(passkit)
    data = {**ANA, "idempotency_key": "k1"}
    assert (await client.post(ENROL, data={**data, "dry_run": "1"})).json()["dry_run"] is True
    assert (await client.post(ENROL, data=data)).json()["duplicate"] is False
    assert route.call_count == 1


async def test_replayed_enrol_without_a_key_is_a_duplicate_not_a_second_pass(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    conflict = httpx.Response(409, json={"code": 6, "message": "member already exists"})
    enrolled(passkit, httpx.Response(200, json={"id": "m1"}), conflict)
    passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(200, json={"id": "m1", "externalId": "CRM-1"})
    )
    first = await client.post(ENROL, data=ANA)
    replay = await client.post(ENROL, data=ANA)
    assert first.json()["duplicate"] is False
    assert replay.status_code == 200, replay.text
    assert replay.json()["duplicate"] is True and replay.json()["id"] == "m1"


async def test_enrol_conflict_with_a_member_the_relay_never_made_is_a_conflict(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    enrolled(passkit, httpx.Response(409, json={"code": 6, "message": "member already exists"}))
    passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(200, json={"id": "m9", "externalId": "CRM-1"})
    )
    answer = await client.post(ENROL, data=ANA)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "conflict"
    assert "upsert" in answer.json()["error"]["hint"]


async def test_revoked_hook_answers_401_and_is_logged(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    enrolled(passkit)
    assert (await client.post(ENROL, data=ANA)).status_code == 200
    await store.revoke_hook("hk_test000001", FROZEN_NOW.timestamp(), template="member-enrol")
    # Every process reloads revocations within seconds; this one is told to reload now.
    client._transport.app.state.services.revocations.forget()  # type: ignore[attr-defined]
    for answer in (await client.post(ENROL, data=ANA), await client.get(ENROL)):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "revoked_token"
    [refused] = await store.list_deliveries(outcome="failed")
    assert (refused.status, refused.error_code) == (401, "revoked_token")


async def test_revocations_reload_after_their_ttl() -> None:
    now = [0.0]
    revoked: dict[str, float] = {}

    async def load() -> dict[str, float]:
        return dict(revoked)

    cache = RevocationCache(load, ttl=2.0, clock=lambda: now[0])
    await cache.check("hk_1")
    revoked["hk_1"] = 1.0
    now[0] = 1.9
    await cache.check("hk_1")  # still the cached set
    now[0] = 2.1
    with pytest.raises(Exception, match="revoked"):
        await cache.check("hk_1")


async def test_every_delivery_is_logged_redacted(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    enrolled(passkit)
    data = {**ANA, "api_token": "s3cr3t-value", "meta_note": "Bearer abc.def.ghi"}
    ok = await client.post(ENROL, data=data)
    bad = await client.post(ENROL, data={"first_name": "Ana"})
    # Both happen at the frozen FROZEN_NOW, so find each by its request id.
    records = {r.request_id: r for r in await store.list_deliveries(limit=2)}
    oldest, newest = records[ok.json()["request_id"]], records[bad.json()["request_id"]]
    assert (oldest.outcome, oldest.status, oldest.operation) == ("ok", 200, "members.enrol")
    assert oldest.hook_id == "hk_test000001" and oldest.template == "member-enrol"
    assert oldest.request["email"] == "ana@example.com"
    assert oldest.passkit_request["path"] == "/members/member"
    assert oldest.passkit_response == {"status": 200, "json": {"id": "m1"}}
    assert (newest.outcome, newest.status, newest.error_code) == (
        "failed",
        422,
        "missing_field",
    )
    stored = json.dumps([oldest.request, oldest.passkit_request, oldest.passkit_response])
    assert "s3cr3t" not in stored and "abc.def.ghi" not in stored
    assert "authorization" not in stored.lower()  # PassKit credentials are never recorded
    hook = await store.get_hook("hk_test000001")
    assert hook is None or hook.deliveries >= 2


async def test_payload_logging_can_be_turned_off(
    passkit: respx.MockRouter, make_client: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    enrolled(passkit)
    client = make_client(make_settings(RELAY_LOG_PAYLOADS="off"), store=store)
    answer = await client.post(ENROL, data=ANA)
    [record] = await store.list_deliveries()
    assert record.request_id == answer.json()["request_id"] and record.outcome == "ok"
    assert (record.request, record.passkit_request, record.passkit_response) == (None, None, None)


async def test_retention_forgets_old_deliveries_and_keys(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    route = enrolled(passkit)
    await client.post(ENROL, data={**ANA, "idempotency_key": "k1"})
    now = FROZEN_NOW.timestamp()
    assert await purge_expired(store, make_settings(), now + 6 * DAY) == (0, 0)
    deleted = await purge_expired(store, make_settings(RELAY_RETENTION_DAYS="10"), now + 11 * DAY)
    assert deleted[0] == 1 and deleted[1] >= 1
    assert await store.list_deliveries() == []
    # The key is forgotten, so (past Zapier's and Make's replay windows) it runs again.
    await client.post(ENROL, data={**ANA, "idempotency_key": "k1", "external_id": "CRM-2"})
    assert route.call_count == 2


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"ok": True}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ok": True, "database": True, "templates": SHIPPED_TEMPLATES}


async def test_readiness_fails_when_the_database_cannot_open(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "relay.db"
    client = make_client(make_settings(DATABASE_URL=f"sqlite:///{missing}"))
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database"] is False


async def test_enrol_whose_answer_was_lost_is_found_not_a_conflict(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # PassKit enrolled the member, the connection dropped before its answer, the retry hears
    # "already exists": that member is ours, so the zap gets it rather than an error.
    enrolled(
        passkit,
        httpx.RemoteProtocolError("peer closed connection without sending complete message"),
        httpx.Response(409, json={"code": 6, "message": "member already exists"}),
    )
    lookup = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(200, json={"id": "m7", "externalId": "CRM-1"})
    )
    answer = await client.post(ENROL, data=ANA)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "m7" and answer.json()["duplicate"] is False
    assert lookup.call_count == 1


def test_rate_limit_lets_a_burst_through_then_paces() -> None:
    now = [0.0]
    limit = HookRateLimit(rate=2, burst=5, clock=lambda: now[0])
    for _ in range(5):
        limit.take("hk_a")
    with pytest.raises(RateLimited) as refused:
        limit.take("hk_a")
    assert refused.value.retry_after == 1 and refused.value.status == 429
    limit.take("hk_b")  # each hook has its own bucket
    now[0] = 0.5  # half a second refills one delivery at 2 a second
    limit.take("hk_a")
    with pytest.raises(RateLimited):
        limit.take("hk_a")
    HookRateLimit(rate=0, burst=0).take("hk_a")  # 0: no limit


async def test_a_runaway_hook_gets_429_with_retry_after(
    passkit: respx.MockRouter, make_client: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    route = enrolled(passkit)
    client = make_client(make_settings(RELAY_RATE_LIMIT="1"), store=store)
    answers = [await client.post(ENROL, data={**ANA, "external_id": f"C{n}"}) for n in range(12)]
    assert [a.status_code for a in answers] == [200] * 10 + [429] * 2  # burst = 10 x rate
    assert answers[-1].headers["retry-after"] == "1"
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert route.call_count == 10
    refused = await store.list_deliveries(outcome="failed")
    assert [r.error_code for r in refused] == ["rate_limited"] * 2

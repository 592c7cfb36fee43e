""" "Already exists" is found by looking, never by PassKit's words.

PassKit documents no answer for a duplicate create (its answers are 200/400/401/403/404/500/
503), so when a create fails for a reason that could be "it exists", the relay looks the record
up once by its external id (PassKit's documented 200 or 404) and decides from that: an upsert
updates what it found, a create answers with its own record (a replay, or an answer that was
lost), a record the relay never made is a `conflict`, and when there is none the failure stands
as PassKit gave it. Through the whole app, PassKit mocked with respx; the same flows against the
sandbox's three duplicate styles are in test_sandbox_e2e.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
import respx

from relay.delivery import pipeline as delivery
from relay.store import Store

from .conftest import make_settings, mint

pytestmark = pytest.mark.anyio

ENROL = mint("member-enrol", program_id="p1", tier_id="base")
UPSERT = mint("member-upsert", program_id="p1", tier_id="base")
COUPON = mint("coupon-issue", campaign_id="c1", offer_id="o1")
ANA = {"external_id": "CRM-1", "email": "ana@example.com"}
MEMBER_LOOKUP = "/members/member/externalId/p1/CRM-1"
# The same "duplicate" as each style of answer a PassKit could give; none is recognised by words.
EXISTS_409 = httpx.Response(409, json={"code": 6, "message": "member already exists"})
EXISTS_400 = httpx.Response(400, json={"code": 3, "message": "externalId already exists"})
NOT_UNIQUE_400 = httpx.Response(400, json={"error": "record with that external id is not unique"})
FOUND = httpx.Response(200, json={"id": "m9", "externalId": "CRM-1", "points": 0})
MISSING = httpx.Response(404, json={"code": 5, "message": "member not found"})
DROPPED = httpx.RemoteProtocolError("peer closed connection without sending complete message")


@pytest.fixture
def client(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(store=store)


def error_of(answer: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    error: dict[str, str] = answer.json()["error"]
    assert error["code"] == code
    return error


async def test_400_already_exists_with_no_such_record_stays_rejected(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=EXISTS_400)
    lookup = passkit.get(MEMBER_LOOKUP).mock(return_value=MISSING)
    error = error_of(await client.post(ENROL, data=ANA), 422, "passkit_rejected")
    assert "externalId already exists" in error["message"]  # PassKit's words, quoted as given
    assert lookup.call_count == 1


async def test_409_for_a_record_the_relay_never_made_is_a_conflict(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=EXISTS_409)
    passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    error = error_of(await client.post(ENROL, data=ANA), 409, "conflict")
    assert "'CRM-1' already exists in PassKit" in error["message"]
    assert "upsert" in error["hint"]


@pytest.mark.parametrize("refusal", [EXISTS_409, EXISTS_400, NOT_UNIQUE_400], ids=str)
async def test_any_wording_found_by_lookup_is_a_conflict(
    refusal: httpx.Response, passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=refusal)
    passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    error_of(await client.post(ENROL, data=ANA), 409, "conflict")


@pytest.mark.parametrize("refusal", [EXISTS_409, EXISTS_400, NOT_UNIQUE_400], ids=str)
async def test_upsert_updates_what_the_lookup_finds(
    refusal: httpx.Response, passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=refusal)
    lookup = passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    update = passkit.put("/members/member").mock(
        return_value=httpx.Response(200, json={"id": "m9"})
    )
    answer = await client.post(UPSERT, data={**ANA, "first_name": "Ana"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] is False and answer.json()["id"] == "m9"
    assert lookup.call_count == 1 and update.call_count == 1
    assert json.loads(update.calls.last.request.content)["externalId"] == "CRM-1"


async def test_upsert_whose_create_fails_for_another_reason_does_not_update(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    refusal = httpx.Response(400, json={"code": 3, "message": "invalid emailAddress"})
    passkit.post("/members/member").mock(return_value=refusal)
    passkit.get(MEMBER_LOOKUP).mock(return_value=MISSING)
    update = passkit.put("/members/member")
    error = error_of(await client.post(UPSERT, data=ANA), 422, "passkit_rejected")
    assert "invalid emailAddress" in error["message"] and update.call_count == 0


@pytest.mark.parametrize(
    ("status", "code"), [(401, "passkit_auth"), (403, "passkit_auth"), (404, "not_found")]
)
async def test_failures_not_about_existence_are_not_looked_up(
    status: int, code: str, passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(
        return_value=httpx.Response(status, json={"code": 7, "message": "no"})
    )
    lookup = passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    for url in (ENROL, UPSERT):
        error_of(await client.post(url, data=ANA), {404: 404}.get(status, 502), code)
    assert lookup.call_count == 0


async def test_a_lost_answer_is_found_whatever_the_retry_hears(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # PassKit enrolled the member, the connection dropped, the retry hears a 400 that says
    # nothing about existence: the lookup finds this call's own member.
    passkit.post("/members/member").mock(side_effect=[DROPPED, NOT_UNIQUE_400])
    passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    answer = await client.post(ENROL, data=ANA)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["id"], answer.json()["duplicate"]) == ("m9", False)


@pytest.mark.parametrize(
    ("created", "status"),
    [
        ("2026-11-23T11:00:00Z", 409),  # an hour before the call (FROZEN_NOW): made elsewhere
        ("2026-11-23T11:59:30.123456789Z", 200),  # within PassKit's clock skew: ours
        ("2026-11-23T12:00:01Z", 200),
    ],
)
@pytest.mark.parametrize("lost", ["dropped", "500s"])
async def test_a_record_older_than_the_call_is_not_its_lost_answer(
    created: str,
    status: int,
    lost: str,
    passkit: respx.MockRouter,
    make_client: Callable[..., httpx.AsyncClient],
    store: Store,
) -> None:
    # Dropped then refused, or 500 to the end of the retries: either may have made the member,
    # unless PassKit dates the one it has before this call began.
    client = make_client(make_settings(RELAY_RETRY_BUDGET="0.5"), store=store)
    create = passkit.post("/members/member")
    if lost == "dropped":
        create.side_effect = [DROPPED, NOT_UNIQUE_400]
    else:
        create.mock(return_value=httpx.Response(500, json={"code": 13, "message": "oops"}))
    record = {"id": "m9", "externalId": "CRM-1", "created": created}
    passkit.get(MEMBER_LOOKUP).mock(return_value=httpx.Response(200, json=record))
    answer = await client.post(ENROL, data=ANA)
    assert answer.status_code == status, answer.text
    if status == 409:
        assert answer.json()["error"]["code"] == "conflict"
    else:
        assert (answer.json()["id"], answer.json()["duplicate"]) == ("m9", False)


async def test_a_replay_of_the_relays_own_create_is_a_duplicate(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(
        side_effect=[httpx.Response(200, json={"id": "m9"}), NOT_UNIQUE_400]
    )
    passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    first = await client.post(ENROL, data=ANA)
    replay = await client.post(ENROL, data=ANA)
    assert replay.status_code == 200, replay.text
    assert replay.json()["duplicate"] is True and replay.json()["id"] == first.json()["id"]


async def test_a_replay_finding_someone_elses_record_is_a_conflict(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # The relay's member m1 was deleted since; the one PassKit has now was made elsewhere.
    passkit.post("/members/member").mock(
        side_effect=[httpx.Response(200, json={"id": "m1"}), EXISTS_409]
    )
    passkit.get(MEMBER_LOOKUP).mock(return_value=FOUND)
    assert (await client.post(ENROL, data=ANA)).status_code == 200
    error_of(await client.post(ENROL, data=ANA), 409, "conflict")


async def test_5xx_to_the_end_of_the_retries_is_looked_up(
    passkit: respx.MockRouter, make_client: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    # A PassKit answering a duplicate with 500 every time: retrying can never succeed, so
    # after the retries one lookup settles it instead of a 503 replayed for days.
    client = make_client(make_settings(RELAY_RETRY_BUDGET="0.5"), store=store)
    create = passkit.post("/members/member").mock(
        return_value=httpx.Response(500, json={"code": 13, "message": "internal error"})
    )
    lookup = passkit.get(MEMBER_LOOKUP).mock(return_value=MISSING)
    error_of(await client.post(ENROL, data=ANA), 503, "passkit_unavailable")  # nothing there
    assert create.call_count >= 2 and lookup.call_count == 1
    update = passkit.put("/members/member").mock(
        return_value=httpx.Response(200, json=FOUND.json())
    )
    lookup.mock(return_value=FOUND)
    upserted = await client.post(UPSERT, data=ANA)
    assert upserted.status_code == 200 and upserted.json()["created"] is False
    assert update.call_count == 1
    # The first enrol's outcome was unknown (only 5xx): its replay counts the member as its own.
    replay = await client.post(ENROL, data=ANA)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["id"], replay.json()["duplicate"]) == ("m9", True)


async def test_a_failed_or_slow_lookup_is_retryable_never_a_conflict(
    passkit: respx.MockRouter,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "LOOKUP_TIMEOUT", 0.2)

    asked: list[httpx.Request] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        await asyncio.sleep(1)
        return FOUND

    passkit.post("/members/member").mock(return_value=EXISTS_409)
    lookup = passkit.get(MEMBER_LOOKUP).mock(side_effect=slow)
    # "Already exists" and no look-up to tell whose: it may be this relay's own member (its
    # answer lost), so never a 409 ("made outside this relay"): a 503 to send again.
    busy = await client.post(ENROL, data=ANA)
    error_of(busy, 503, "passkit_busy")
    assert int(busy.headers["Retry-After"]) > 0
    assert len(asked) == 1
    passkit.post("/members/member").mock(return_value=EXISTS_400)
    lookup.mock(return_value=httpx.Response(401, json={"error": "bad token"}))
    error_of(await client.post(ENROL, data=ANA), 503, "passkit_busy")
    assert lookup.call_count == 1  # one lookup per failed create (counted since re-mocked)
    # The claim was kept: once PassKit answers the look-up, the retry settles it as ours.
    lookup.mock(return_value=FOUND)
    settled = await client.post(ENROL, data=ANA)
    assert settled.status_code == 200, settled.text


async def test_a_coupon_made_elsewhere_is_a_conflict_with_a_coupon_hint(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/coupon/singleUse/coupon").mock(return_value=NOT_UNIQUE_400)
    passkit.get("/coupon/singleUse/coupon/externalId/c1/W-1").mock(
        return_value=httpx.Response(200, json={"id": "cp1", "externalId": "W-1"})
    )
    error = error_of(await client.post(COUPON, data={"external_id": "W-1"}), 409, "conflict")
    assert "coupon" in error["message"] and "external_id" in error["hint"]

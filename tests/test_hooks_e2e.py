"""Hook deliveries through the whole app to a respx-mocked PassKit: the outgoing request, its
credentials, and the flat answer a next Zapier/Make step maps."""

from __future__ import annotations

import gc
import json
import time
import types

import httpx
import pytest
import respx

from relay.passkit.client import JWT_BACKDATE, JWT_REQUEST_LIFETIME

from .cases import CASES, Case
from .conftest import PASSKIT_KEY, decode_jwt, mint

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.template)
async def test_delivery_sends_exact_request_and_answers_flat(
    case: Case, passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    # respx matches the decoded path; the raw, percent-encoded one is asserted below.
    listed = case.path.startswith("/members/member/list/")  # a server-streamed list
    reply = (httpx.Response(200, content=json.dumps({"result": case.answer}).encode() + b"\n")
             if listed else httpx.Response(200, json=case.answer))  # fmt: skip
    route = passkit.route(method=case.method, path=httpx.URL(case.path).path).mock(
        return_value=reply
    )
    before = int(time.time())
    answer = await relay_client.post(mint(case.template, **case.params), data=case.fields)

    assert answer.status_code == 200, answer.text
    sent = route.calls.last.request
    assert sent.method == case.method
    assert sent.url.raw_path.decode() == case.path
    assert (json.loads(sent.content) if sent.content else None) == case.json
    _header, claims, _ = decode_jwt(sent.headers["authorization"])  # bare JWT, no "Bearer"
    assert claims["uid"] == PASSKIT_KEY
    # Minted for this call: issued a little in the past (clock skew), expiring in about a minute.
    assert before - JWT_BACKDATE <= claims["iat"] <= int(time.time()) - JWT_BACKDATE
    assert claims["exp"] == claims["iat"] + JWT_REQUEST_LIFETIME

    body = answer.json()
    assert body["ok"] is True and body["duplicate"] is False and body["dry_run"] is False
    assert body["request_id"].startswith("req_")
    assert body["request_id"] == answer.headers["x-request-id"]
    assert body["result"] == case.answer
    operation = body["operation"]
    if operation.endswith((".delete", ".void")) or operation == "distribution.email":
        assert body["pass_url"] is None
    else:
        assert body["id"] in ("2h8DsbNuHkxSsyGbFvQQGl", "1cZ8Xm0dhd5xTqM5TZJXm4")
        assert body["pass_url"] == f"https://pub1.pskt.io/{body['id']}"


async def test_wrapped_json_with_labels_and_nested_meta(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    route = passkit.post("/members/member").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    # Zapier's "Wrap Request In Array", labels as keys, and a nested object for custom fields.
    payload = {"External ID": "CRM-9", "Email": "zoe@example.com", "meta": {"store": "Soho"}}
    answer = await relay_client.post(
        mint("member-enrol", program_id="p1", tier_id="base"), json=[payload]
    )
    assert answer.status_code == 200, answer.text
    sent = json.loads(route.calls.last.request.content)
    assert sent["externalId"] == "CRM-9"
    assert sent["metaData"] == {"store": "Soho"}
    assert answer.json()["external_id"] == "CRM-9"


async def test_dry_run_validates_and_sends_nothing(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    route = passkit.post("/members/member")
    url = mint("member-enrol", program_id="p1", tier_id="base")
    for how in ({"params": {"dry_run": "1"}}, {"headers": {"X-Relay-Dry-Run": "yes"}}):
        answer = await relay_client.post(url, data={"external_id": "C1", "email": "a@b.co"}, **how)
        body = answer.json()
        assert answer.status_code == 200 and body["dry_run"] is True
        assert body["request"] == {
            "method": "POST",
            "path": "/members/member",
            "json": {
                "programId": "p1",
                "tierId": "base",
                "externalId": "C1",
                "person": {"emailAddress": "a@b.co"},
            },
        }
    answer = await relay_client.post(
        url, data={"external_id": "C1", "email": "a@b.co", "dry_run": "1"}
    )
    assert answer.json()["dry_run"] is True
    assert route.call_count == 0


async def test_upsert_updates_when_member_exists(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    create = passkit.post("/members/member").mock(
        return_value=httpx.Response(409, json={"code": 6, "message": "member already exists"})
    )
    # Not taken from the 409: the relay looks the member up, and updates the one it finds.
    lookup = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(200, json={"id": "m1", "externalId": "CRM-1"})
    )
    update = passkit.put("/members/member").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    answer = await relay_client.post(
        mint("member-upsert", program_id="p1", tier_id="base"),
        data={"external_id": "CRM-1", "email": "ana@example.com", "first_name": "Ana"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["operation"] == "members.upsert" and body["created"] is False
    assert body["id"] == "m1" and body["pass_url"].endswith("/m1")
    assert create.call_count == 1 and lookup.call_count == 1
    sent = json.loads(update.calls.last.request.content)
    # On update the default tier is not forced onto an existing member.
    assert sent == {
        "programId": "p1",
        "externalId": "CRM-1",
        "person": {"forename": "Ana", "displayName": "Ana", "emailAddress": "ana@example.com"},
    }


async def test_upsert_creates_when_new(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m2"}))
    update = passkit.put("/members/member")
    answer = await relay_client.post(
        mint("member-upsert", program_id="p1", tier_id="base"),
        data={"external_id": "CRM-2", "email": "bo@example.com"},
    )
    assert answer.json()["created"] is True and update.call_count == 0


async def test_token_in_header_is_accepted(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    passkit.put("/members/member/points/earn").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    token = mint("member-points-earn", program_id="p1").rsplit("/", 1)[1]
    data = {"external_id": "CRM-1", "points": "5"}
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-Relay-Token": token}):
        answer = await relay_client.post("/hooks", data=data, headers=headers)
        assert answer.status_code == 200, answer.text
    answer = await relay_client.post("/hooks", data=data)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_token"


async def test_put_is_accepted_like_post(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    passkit.put("/members/member/points/earn").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    answer = await relay_client.put(
        mint("member-points-earn", program_id="p1"), data={"external_id": "CRM-1", "points": "5"}
    )
    assert answer.status_code == 200


async def test_get_describes_the_hook(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.get(
        mint("member-upsert", program_id="p1", tier_id="base"),
        headers={"Accept": "application/json"},
    )
    body = answer.json()
    assert body["template"] == "member-upsert" and body["operation"] == "members.upsert"
    required = [f["name"] for f in body["fields"] if f["required"]]
    assert required == ["external_id", "email"]
    assert all(f["help"] and f["example"] for f in body["fields"])


@pytest.mark.parametrize("template", ["member-points-earn", "member-points-burn"])
async def test_zero_points_are_acknowledged_and_not_sent(
    template: str, passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    # PassKit refuses an earn or burn of 0 points; a purchase worth 0 points is no error in a zap.
    route = passkit.route()
    answer = await relay_client.post(
        mint(template, program_id="p1"), data={"external_id": "CRM-1", "points": "0"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True and body["skipped"] is True
    assert body["reason"].startswith("0 points: nothing to")
    assert route.call_count == 0


async def test_a_delivery_leaves_no_reference_cycles_of_the_relays_making(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    """Every delivery's garbage is freed when it is done with, not left for the garbage
    collector: a nested function that calls itself (two of them did, ~9 cycles a delivery) made
    the collector run and walk the heap over and over under load (issue 24)."""
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))
    url = mint("member-enrol", program_id="p1", tier_id="base", timezone="Europe/Madrid", v="2")
    form = {"email": "ana@example.com", "first_name": "Ana", "meta_store": "Soho",
            "expiry": "2027-01-31 18:00"}  # fmt: skip
    answer = await relay_client.post(url, data={**form, "external_id": "warm-up"})
    assert answer.status_code == 200, answer.text
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds, to look at it
    try:
        for n in range(5):
            answer = await relay_client.post(
                url, data={**form, "external_id": f"C{n}", "idempotency_key": f"k{n}"}
            )
            assert answer.status_code == 200, answer.text
        assert answer.json().get("local_times"), answer.json()  # the time walk ran too
        gc.collect()
        ours = [o for o in gc.garbage if str(getattr(o, "__module__", "")).startswith("relay")]
        ours += [o for o in gc.garbage if isinstance(o, types.FrameType)
                 and "/relay/" in o.f_code.co_filename]  # fmt: skip
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []

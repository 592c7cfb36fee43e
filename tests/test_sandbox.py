"""The PassKit sandbox: PassKit's paths, bodies, answers and errors, auth, faults and pass pages.

Driven over ASGI with JWTs from `relay.passkit.client.mint_jwt`, the way the relay will call it; the
dropped-connection fault needs a socket, so those tests start uvicorn on a loopback port.
"""

from __future__ import annotations

import string
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from relay.passkit.client import mint_jwt
from relay.sandbox import (
    DEMO_CAMPAIGN_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    ERROR_SHAPES,
    Faults,
    SandboxConfig,
    State,
    create_sandbox,
)

from .fakes import FakeClock
from .servers import serve_in_thread

pytestmark = pytest.mark.anyio

KEY, SECRET, LONG_LIVED = "sbx-key", "sbx-secret", "long-lived-token-0123"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ISSUED = int(NOW.timestamp())
CONFIG = SandboxConfig(KEY, SECRET, LONG_LIVED, public_url="https://sandbox.test")

MEMBERS, COUPONS, TICKETS = "/members/member", "/coupon/singleUse/coupon", "/eventTickets/ticket"
EARN, BURN, SET = (f"{MEMBERS}/points/{verb}" for verb in ("earn", "burn", "set"))
# (HTTP status, gRPC code) of PassKit's errors
BAD, PRECONDITION, NOT_FOUND, EXISTS = (400, 3), (400, 9), (404, 5), (409, 6)
DENIED, BUSY, DOWN = (401, 16), (429, 8), (503, 14)

MEMBER = {"programId": DEMO_PROGRAM_ID, "tierId": "base", "externalId": "CRM-1"}
BY_EXTERNAL_ID = {"externalId": "CRM-1", "programId": DEMO_PROGRAM_ID}
ANA = {"forename": "Ana", "surname": "Diaz", "displayName": "Ana Diaz", "emailAddress": "a@x.io"}
COUPON = {"campaignId": DEMO_CAMPAIGN_ID, "offerId": DEMO_OFFER_ID, "externalId": "W-1"}
# Run a test under each error body shape live PassKit answers with (see the `error_shape` fixture).
EACH_SHAPE = pytest.mark.parametrize("error_shape", ERROR_SHAPES, indirect=True)


def at(days: float) -> str:
    return (NOW + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ticket(number: str = "T-1", days: float = 10, **extra: Any) -> dict[str, Any]:
    event = {"productionId": DEMO_PRODUCTION_ID, "venueId": DEMO_VENUE_ID}
    event["scheduledStartDate"] = at(days)
    return {"ticketTypeId": DEMO_TICKET_TYPE_ID, "ticketNumber": number, "event": event, **extra}


def error_of(body: Any, shape: str) -> tuple[int | None, str]:
    """(gRPC code, message) of an error body in `shape`; "string" carries no code."""
    if shape == "string":
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return None, body["error"]
    if shape == "object":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        return body["error"]["code"], body["error"]["message"]
    assert set(body) == {"code", "message", "details"} and body["details"] == [], body
    return body["code"], body["message"]


class Api:
    """An httpx client with PassKit-shaped expectations: `ok` wants a 200 and returns the JSON;
    `fails` wants an error body in the sandbox's error shape (the gateway's
    `{"code", "message", "details": []}` by default) with the given (status, gRPC code) and a
    message containing `text`."""

    def __init__(self, client: httpx.AsyncClient, shape: str = "gateway") -> None:
        self.client = client
        self.shape = shape

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        answer = await self.client.request(method, path, json=body, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def fails(
        self, method: str, path: str, body: Any, expected: tuple[int, int], text: str, **kw: Any
    ) -> None:
        answer = await self.client.request(method, path, json=body, **kw)
        admin = path.startswith("/_sandbox/")  # not PassKit: always the gateway's shape
        code, message = error_of(answer.json(), "gateway" if admin else self.shape)
        status, grpc = expected
        assert answer.status_code == status and code in (grpc, None), answer.text
        assert text in message

    async def enrol(self, **extra: Any) -> str:
        body = await self.ok("POST", MEMBERS, {**MEMBER, "person": ANA, **extra})
        assert set(body) == {"id"}
        return str(body["id"])

    async def faults(self, **faults: Any) -> dict[str, Any]:
        settings: dict[str, Any] = await self.ok("POST", "/_sandbox/faults", faults)
        return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW.timestamp())


@pytest.fixture
def error_shape(request: pytest.FixtureRequest) -> str:
    """The sandbox's error body shape: "gateway" unless a test is marked EACH_SHAPE."""
    return str(getattr(request, "param", "gateway"))


@pytest.fixture
def app(clock: FakeClock, error_shape: str) -> Any:
    return create_sandbox(replace(CONFIG, error_shape=error_shape), clock=clock.time)


@pytest.fixture
def state(app: Any) -> State:
    sandbox: State = app.state.sandbox
    return sandbox


@pytest.fixture
async def api(app: Any, error_shape: str) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": mint_jwt(KEY, SECRET, ISSUED)}
    async with httpx.AsyncClient(
        transport=transport, base_url="https://sandbox.test", headers=headers
    ) as client:
        yield Api(client, error_shape)


def test_seed_ids_look_like_passkit_ids(state: State) -> None:
    ids = [DEMO_PROGRAM_ID, DEMO_CAMPAIGN_ID, DEMO_OFFER_ID, DEMO_PRODUCTION_ID, DEMO_VENUE_ID]
    for pass_id in [*ids, DEMO_TICKET_TYPE_ID]:
        assert len(pass_id) == 22 and set(pass_id) <= set(string.ascii_letters + string.digits)
    assert [t for (p, t) in state.tiers if p == DEMO_PROGRAM_ID] == ["base", "silver", "gold"]
    assert not create_sandbox(SandboxConfig(KEY, SECRET, seed=False)).state.sandbox.programs


@EACH_SHAPE
async def test_member_lifecycle(api: Api, state: State) -> None:
    member_id = await api.enrol(points=10, metaData={"store": "Soho"})
    member = await api.ok("GET", f"{MEMBERS}/id/{member_id}")
    assert (member["id"], member["person"]["displayName"]) == (member_id, "Ana Diaz")
    assert (member["points"], member["status"], member["tierPoints"]) == (10, "ENROLLED", 0)
    assert member["created"] == member["updated"] == at(0)
    assert await api.ok("GET", f"{MEMBERS}/externalId/{DEMO_PROGRAM_ID}/CRM-1") == member

    # PATCH (the default): missing and falsy values are ignored, nested objects merged.
    patch = {"id": member_id, "person": {"displayName": "Ana D."}, "points": 0, "optOut": False}
    assert await api.ok("PUT", MEMBERS, patch) == {"id": member_id}
    member = await api.ok("GET", f"{MEMBERS}/id/{member_id}")
    assert member["person"]["displayName"] == "Ana D." and member["person"]["forename"] == "Ana"
    assert member["points"] == 10 and member["metaData"] == {"store": "Soho"}

    # OPERATION_PUT: the record becomes what was sent (identity and tier kept).
    put = {**BY_EXTERNAL_ID, "person": {"displayName": "Ana"}, "operation": "OPERATION_PUT"}
    await api.ok("PUT", MEMBERS, put)
    member = await api.ok("GET", f"{MEMBERS}/id/{member_id}")
    assert member["person"]["forename"] == "" and member["metaData"] == {}
    assert (member["points"], member["externalId"], member["tierId"]) == (0, "CRM-1", "base")

    earned = await api.ok("PUT", EARN, {**BY_EXTERNAL_ID, "points": 25})
    assert earned == {**BY_EXTERNAL_ID, "id": member_id, "points": 25, "secondaryPoints": 0} | {
        "tierPoints": 0
    }
    assert (await api.ok("PUT", BURN, {"id": member_id, "points": 5}))["points"] == 20
    burn = {"id": member_id, "points": 21}
    await api.fails("PUT", BURN, burn, PRECONDITION, "points cannot go below zero")
    await api.fails(
        "PUT",
        EARN,
        {"id": member_id, "points": -1},
        BAD,
        "points is less than PassKit allows (at least 0)",
    )
    # 0 means "unset" in proto3, and PassKit's rule wants a balance or a reset: points/set
    # reaches zero only through resetPoints.
    await api.fails("PUT", SET, {"id": member_id, "points": 0}, BAD,
                    "points is required (and not 0) unless")  # fmt: skip
    reset = await api.ok("PUT", SET, {"id": member_id, "resetPoints": True, "tierPoints": 7})
    assert (reset["points"], reset["tierPoints"]) == (0, 7)

    event = await api.ok("PUT", f"{MEMBERS}/tier", {"memberId": member_id, "tierId": "gold"})
    assert event["eventType"] == "EVENT_MEMBER_TIER_CHANGED" and len(event["id"]) == 22
    assert event["member"] == {
        **BY_EXTERNAL_ID,
        "id": member_id,
        "groupingIdentifier": "",
        "tierId": "gold",
        "person": member["person"],
    }
    for path, status in (("checkIn", "CHECKED_IN"), ("checkOut", "CHECKED_OUT")):
        body = {"externalMemberId": "CRM-1", "programId": DEMO_PROGRAM_ID, "address": "Store 12"}
        event = await api.ok("POST", f"{MEMBERS}/{path}", body)
        assert (event["eventType"], event["address"]) == (f"EVENT_MEMBER_{status}", "Store 12")
        assert (await api.ok("GET", f"{MEMBERS}/id/{member_id}"))["status"] == status

    assert await api.ok("DELETE", MEMBERS, BY_EXTERNAL_ID) == {}
    await api.fails("GET", f"{MEMBERS}/id/{member_id}", None, NOT_FOUND, "member not found")
    await api.enrol()  # the external id is free again
    assert len(state.member_events) == 6  # earn, burn, set (the reset), tier, in, out


@EACH_SHAPE
async def test_duplicate_external_id_is_409(api: Api) -> None:
    await api.enrol()
    await api.fails("POST", MEMBERS, MEMBER, EXISTS, "member with externalId CRM-1 already exists")


# How the sandbox answers a duplicate create (PassKit documents no answer for one).
DUPLICATES = {
    "conflict": (EXISTS, "already exists"),
    "invalid": (BAD, "record with that external id is not unique"),
    "internal": ((500, 13), "internal error"),
}


@pytest.mark.parametrize("style", list(DUPLICATES))
async def test_each_duplicate_style(api: Api, state: State, style: str) -> None:
    assert (await api.faults(duplicates=style))["duplicates"] == style
    await api.enrol()
    await api.ok("POST", COUPONS, COUPON)
    await api.ok("POST", TICKETS, ticket())
    expected, text = DUPLICATES[style]
    for path, body in ((MEMBERS, MEMBER), (COUPONS, COUPON), (TICKETS, ticket())):
        await api.fails("POST", path, body, expected, text)
        answer = await api.client.post(path, json=body)
        assert (style == "conflict") == ("already exist" in answer.text)
    assert (len(state.members), len(state.coupons), len(state.tickets)) == (1, 1, 1)
    await api.ok("POST", "/_sandbox/reset")  # back to the configured style
    assert (await api.ok("GET", "/_sandbox/faults"))["duplicates"] == "conflict"


def test_duplicate_style_from_the_config() -> None:
    app = create_sandbox(replace(CONFIG, faults=Faults(duplicates="internal")))
    sandbox: State = app.state.sandbox
    assert sandbox.faults.duplicates == "internal"
    sandbox.reset()
    assert sandbox.faults.duplicates == "internal"


async def test_earn_and_burn_need_an_amount_above_zero(api: Api) -> None:
    member_id = await api.enrol(points=10)
    for path in (EARN, BURN):
        for body in ({"id": member_id, "points": 0}, {"id": member_id}):
            await api.fails("PUT", path, body, BAD, "points is required (and not 0) unless")
    earned = await api.ok("PUT", EARN, {"id": member_id, "tierPoints": 3})
    assert (earned["points"], earned["tierPoints"]) == (10, 3)


async def test_a_ticket_is_named_one_way_only(api: Api) -> None:
    ticket_id = (await api.ok("POST", TICKETS, ticket()))["id"]
    by_number = {"productionId": DEMO_PRODUCTION_ID, "ticketNumber": "T-1"}
    both = {"ticket": {"ticketId": ticket_id, "ticketNumber": by_number}}
    await api.fails("PUT", f"{TICKETS}/redeem", both, BAD, "multiple id oneof fields")
    redeemed = await api.ok("PUT", f"{TICKETS}/redeem", {"ticket": {"ticketId": ticket_id}})
    assert redeemed == {"id": ticket_id}


async def test_tier_that_allows_overdraw(api: Api) -> None:
    tier = {"programId": DEMO_PROGRAM_ID, "id": "staff", "name": "Staff", "pointsOverdrawn": True}
    assert await api.ok("POST", "/members/tier", tier) == {"id": "staff"}
    member_id = await api.enrol(tierId="staff")
    assert (await api.ok("PUT", BURN, {"id": member_id, "points": 5}))["points"] == -5


async def test_points_are_float32_like_passkit(api: Api) -> None:
    member_id = await api.enrol(points=16777217)
    earned = await api.ok("PUT", EARN, {"id": member_id, "points": 0.1})
    assert earned["points"] == 16777216  # float32 precision, as the reference warns


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tierId": 5}, "invalid value for string field tierId: 5"),
        ({"person": {"gender": "MAN"}}, 'invalid value for enum field gender: "MAN"'),
        ({"points": "lots"}, "invalid value for float field points"),
        ({"tierPoints": -1}, "invalid value for uint32 field tierPoints: -1"),
        ({"optOut": "yes"}, "invalid value for bool field optOut"),
        ({"expiryDate": "31/12/2026"}, 'Timestamp value "31/12/2026" for field expiryDate'),
        ({"metaData": {"amount": 49.9}}, "string field metaData.amount: 49.9"),
        ({"person": "Ana"}, 'unexpected token "Ana" for field person'),
        ({"person": {"dateOfBirth": {"year": "19x0"}}}, "int32 field year"),
        ({"tierId": ""}, "tierId is required"),
        ({"programId": None}, "programId is required"),
    ],
)
async def test_validation_errors_name_the_field(api: Api, body: Any, message: str) -> None:
    await api.fails("POST", MEMBERS, {**MEMBER, **body}, BAD, message)


async def test_protojson_leniency_and_strictness(api: Api) -> None:
    body = {"program_id": DEMO_PROGRAM_ID, "tier_id": "silver", "points": "12.5"}
    member = await api.ok("GET", f"{MEMBERS}/id/{(await api.ok('POST', MEMBERS, body))['id']}")
    assert (member["tierId"], member["points"], member["externalId"]) == ("silver", 12.5, "")
    # PassKit's gateway would drop a field its message does not define without a word; the
    # sandbox refuses it, as PassKit's own SDK does, so the data loss shows in a test.
    await api.fails("POST", MEMBERS, {**body, "x": 1}, BAD, 'unknown field "x"')
    await api.fails("POST", MEMBERS, [MEMBER], BAD, "unexpected token")
    bad_json = await api.client.post(MEMBERS, content=b"{nope")
    assert bad_json.status_code == 400 and "syntax error" in bad_json.json()["message"]


@EACH_SHAPE
@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", MEMBERS, {**MEMBER, "programId": "x" * 22}, "program not found"),
        ("POST", MEMBERS, {**MEMBER, "tierId": "platinum"}, "tier not found"),
        ("PUT", MEMBERS, {"id": "y" * 22, "points": 1}, "member not found"),
        ("PUT", f"{MEMBERS}/tier", {"memberId": "y", "tierId": "gold"}, "member not found"),
        ("GET", f"{COUPONS}/{'z' * 22}", None, "coupon not found"),
        ("GET", f"{TICKETS}/id/{'z' * 22}", None, "ticket not found"),
        ("POST", COUPONS, {**COUPON, "offerId": "o"}, "offer not found"),
        ("POST", TICKETS, ticket(ticketTypeId="t"), "ticket type not found"),
    ],
)
async def test_unknown_records_are_404(
    api: Api, method: str, path: str, body: Any, message: str
) -> None:
    await api.fails(method, path, body, NOT_FOUND, message)


async def test_identity_rules(api: Api) -> None:
    member_id = await api.enrol()
    await api.fails("PUT", MEMBERS, {"externalId": "CRM-1"}, BAD, "programId is required")
    await api.fails("PUT", MEMBERS, {"points": 3}, BAD, "id or externalId and programId")
    change = {"id": member_id, "externalId": "CRM-2"}
    await api.fails("PUT", MEMBERS, change, BAD, "externalId cannot be changed")


@EACH_SHAPE
async def test_coupon_lifecycle(api: Api) -> None:
    coupon_id = (await api.ok("POST", COUPONS, {**COUPON, "person": ANA}))["id"]
    await api.fails("POST", COUPONS, COUPON, EXISTS, "coupon with externalId W-1 already exists")
    got = await api.ok("GET", f"{COUPONS}/{coupon_id}")
    assert (got["status"], got["offerId"], got["redemptionDetails"]) == (
        "UNREDEEMED",
        DEMO_OFFER_ID,
        None,
    )
    assert await api.ok("GET", f"{COUPONS}/externalId/{DEMO_CAMPAIGN_ID}/W-1") == got

    details = {"redemptionReference": "till-3", "redemptionDate": at(-5)}
    redeem = {"campaignId": DEMO_CAMPAIGN_ID, "externalId": "W-1", "redemptionDetails": details}
    assert await api.ok("PUT", f"{COUPONS}/redeem", redeem) == {"id": coupon_id}
    got = await api.ok("GET", f"{COUPONS}/{coupon_id}")
    assert (got["status"], got["redemptionDetails"]["redemptionReference"]) == (
        "REDEEMED",
        "till-3",
    )
    assert got["redemptionDetails"]["redemptionDate"] == at(0)  # set by PassKit, not the client
    again = {"id": coupon_id}
    await api.fails("PUT", f"{COUPONS}/redeem", again, PRECONDITION, "already been redeemed")
    assert await api.ok("DELETE", COUPONS, {"id": coupon_id}) == {}
    await api.fails("GET", f"{COUPONS}/{coupon_id}", None, NOT_FOUND, "coupon not found")


@EACH_SHAPE
async def test_ticket_lifecycle(api: Api, state: State) -> None:
    seat = {"section": "B", "row": "4", "seat": "12"}
    ticket_id = (await api.ok("POST", TICKETS, ticket(seatInfo=seat, person=ANA)))["id"]
    await api.fails("POST", TICKETS, ticket(), EXISTS, "ticketNumber T-1 already exists")
    got = await api.ok("GET", f"{TICKETS}/id/{ticket_id}")
    assert (got["status"], got["ticketNumber"], got["seatInfo"]["seat"]) == ("ISSUED", "T-1", "12")
    assert got["event"]["production"]["name"] == "Sandbox Live"
    assert got["ticketType"]["id"] == DEMO_TICKET_TYPE_ID and got["optOut"] == "OFF"
    by_event = {"ticketTypeId": DEMO_TICKET_TYPE_ID, "eventId": got["event"]["id"]}
    await api.ok("POST", TICKETS, {**by_event, "ticketNumber": "T-2"})
    await api.ok("POST", TICKETS, ticket("T-3"))  # production + venue + start: the same event
    assert len(state.events) == 1

    number = {"productionId": DEMO_PRODUCTION_ID, "ticketNumber": "T-1"}
    assert await api.ok("GET", f"{TICKETS}/ticketNumber", params=number) == got
    redeem = {"ticket": {"ticketNumber": number}, "redemptionDetails": {"redemptionSource": "gate"}}
    assert await api.ok("PUT", f"{TICKETS}/redeem", redeem) == {"id": ticket_id}
    again = {"ticket": {"ticketId": ticket_id}}
    await api.fails("PUT", f"{TICKETS}/redeem", again, PRECONDITION, "already been redeemed")
    assert state.tickets[ticket_id]["redemptionDetails"]["redemptionSource"] == "gate"


@pytest.mark.parametrize("days", [91, -91])
async def test_ticket_outside_the_90_day_window(api: Api, state: State, days: int) -> None:
    await api.fails("POST", TICKETS, ticket(days=days), BAD, "within 90 days")
    assert not state.events and not state.tickets


async def test_ticket_needs_an_event(api: Api) -> None:
    body: dict[str, Any] = {"ticketTypeId": DEMO_TICKET_TYPE_ID, "ticketNumber": "T-9"}
    await api.fails("POST", TICKETS, body, BAD, "must send eventId or event")
    body["event"] = {"productionId": DEMO_PRODUCTION_ID, "venueId": DEMO_VENUE_ID}
    await api.fails("POST", TICKETS, body, BAD, "event.scheduledStartDate is required")


async def test_account_set_up_through_the_api(api: Api) -> None:
    program = (await api.ok("POST", "/members/program", {"name": "Club", "id": "mine"}))["id"]
    assert len(program) == 22  # ids are PassKit's to choose, except tier ids
    tier = {"programId": program, "id": "VIP", "name": "VIP"}
    await api.fails("POST", "/members/tier", tier, BAD, "lower case")
    await api.ok("POST", "/members/tier", {**tier, "id": "vip"})
    await api.ok("POST", MEMBERS, {"programId": program, "tierId": "vip"})
    campaign = (await api.ok("POST", "/coupon/singleUse/campaign", {"name": "Spring"}))["id"]
    offer = {"campaignId": campaign, "offerTitle": "2 for 1", "offerDetails": "Tuesdays"}
    offer_id = (await api.ok("POST", "/coupon/singleUse/offer", offer))["id"]
    await api.ok("POST", COUPONS, {"campaignId": campaign, "offerId": offer_id})
    production = (await api.ok("POST", "/eventTickets/production", {"name": "Gala"}))["id"]
    venue = (await api.ok("POST", "/eventTickets/venue", {"name": "Hall"}))["id"]
    stalls = {"productionId": production, "name": "Stalls"}
    type_id = (await api.ok("POST", "/eventTickets/ticketType", stalls))["id"]
    event = {"productionId": production, "venueId": venue, "scheduledStartDate": at(30)}
    await api.ok("POST", TICKETS, {"ticketTypeId": type_id, "event": event})
    await api.fails("POST", TICKETS, ticket(ticketTypeId=type_id), BAD, "another production")


async def test_email_distribution_is_recorded(api: Api, state: State) -> None:
    member_id = await api.enrol()
    await api.ok("POST", "/distribution/email", {"id": member_id, "protocol": "MEMBERSHIP"})
    by_external = {"externalId": "CRM-1", "classId": DEMO_PROGRAM_ID, "protocol": 100}
    await api.ok("POST", "/distribution/email", {**by_external, "alternativeEmail": "b@x.io"})
    pass_url = f"https://sandbox.test/pass/{member_id}"
    assert [(e["to"], e["passUrl"]) for e in state.emails] == [
        ("a@x.io", pass_url),
        ("b@x.io", pass_url),
    ]
    await api.fails("POST", "/distribution/email", {"id": member_id}, BAD, "protocol is required")
    coupon = {"id": member_id, "protocol": "SINGLE_USE_COUPON"}
    await api.fails("POST", "/distribution/email", coupon, NOT_FOUND, "coupon not found")


@EACH_SHAPE
@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "no jwt token provided"),
        ("", "no jwt token provided"),
        (mint_jwt(KEY, "not-the-secret", ISSUED), "signature is invalid"),
        (mint_jwt(KEY, SECRET, ISSUED - 7200), "token is expired"),
        (mint_jwt(KEY, SECRET, ISSUED - 60), "jwt was issued too long ago"),  # exp an hour on
        (mint_jwt(KEY, SECRET, ISSUED - 600, 3600), "jwt was issued too long ago"),
        (mint_jwt(KEY, SECRET, ISSUED + 6), "Token used before issued"),
        (mint_jwt(KEY, SECRET, ISSUED + 120), "Token used before issued"),
        (mint_jwt("someone-else", SECRET, ISSUED), "invalid uid"),
        ("PKAuth " + mint_jwt(KEY, SECRET, ISSUED), "illegal base64 data at input byte 6"),
        ("not-a-jwt", "token contains an invalid number of segments"),
        (f"Bearer {LONG_LIVED}x", "invalid long-lived token"),
        (LONG_LIVED, "token contains an invalid number of segments"),  # Bearer is required
    ],
    ids=[
        "missing",
        "empty",
        "forged",
        "expired",
        "60-s-old",
        "10-min-old",
        "future-6s",
        "future",
        "uid",
        "prefix",
        "junk",
        "bearer",
        "bare",
    ],
)
async def test_auth_failures_are_401(
    api: Api, state: State, header: str | None, message: str
) -> None:
    del api.client.headers["Authorization"]
    headers = {} if header is None else {"Authorization": header}
    await api.fails("POST", MEMBERS, MEMBER, DENIED, message, headers=headers)
    assert not state.members


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {LONG_LIVED}",
        "Bearer " + mint_jwt(KEY, SECRET, ISSUED),
        mint_jwt(KEY, SECRET, ISSUED + 5),
        mint_jwt(KEY, SECRET, ISSUED - 59),
        mint_jwt(KEY, SECRET, ISSUED - 10, 70),  # what the relay sends
    ],
    ids=["long-lived", "bearer-jwt", "small-skew", "59-s-old", "relay"],
)
async def test_accepted_credentials(api: Api, header: str) -> None:
    await api.ok("POST", MEMBERS, MEMBER, headers={"Authorization": header})


async def test_jwt_callers_get_a_refreshed_token(api: Api, clock: FakeClock) -> None:
    clock.now += 50
    answer = await api.client.get(f"{MEMBERS}/id/x")
    refreshed = {"Authorization": answer.headers["X-Passkit-Token"]}
    clock.now += 20  # the first token is 70 s old, the one refreshed at +50 s only 20 s
    await api.fails("GET", f"{MEMBERS}/id/x", None, DENIED, "jwt was issued too long ago")
    await api.fails("GET", f"{MEMBERS}/id/x", None, NOT_FOUND, "member", headers=refreshed)
    bearer = {"Authorization": f"Bearer {LONG_LIVED}"}
    assert (
        "X-Passkit-Token" not in (await api.client.get(f"{MEMBERS}/id/x", headers=bearer)).headers
    )


async def test_tokens_age_on_the_sandbox_clock(api: Api, clock: FakeClock) -> None:
    # A token is refused from 60 s after its iat, however long its exp: moving the sandbox's
    # clock ages it, no sleeping needed. A long-lived token never ages.
    fresh = {"Authorization": mint_jwt(KEY, SECRET, int(clock.now), 3600)}
    clock.now += 59
    await api.ok("POST", MEMBERS, MEMBER, headers=fresh)
    clock.now += 1
    await api.fails("GET", f"{MEMBERS}/id/x", None, DENIED, "jwt was issued too long ago",
                    headers=fresh)  # fmt: skip
    clock.now += 86_400
    await api.ok("GET", f"{MEMBERS}/externalId/{DEMO_PROGRAM_ID}/CRM-1",
                 headers={"Authorization": f"Bearer {LONG_LIVED}"})  # fmt: skip


@pytest.mark.parametrize("shape", ERROR_SHAPES)
async def test_error_shape_is_set_at_run_time(api: Api, shape: str) -> None:
    assert await api.ok("GET", "/_sandbox/errors") == {
        "shape": "gateway",
        "shapes": ["gateway", "string", "object"],
    }
    assert (await api.ok("POST", "/_sandbox/errors", {"shape": shape}))["shape"] == shape
    assert (await api.ok("GET", "/_sandbox/state"))["errorShape"] == shape
    api.shape = shape
    await api.fails("GET", f"{COUPONS}/{'z' * 22}", None, NOT_FOUND, "coupon not found")
    await api.fails("GET", "/members/nothing", None, NOT_FOUND, "Not Found")
    del api.client.headers["Authorization"]
    await api.fails("GET", f"{COUPONS}/x", None, DENIED, "no jwt token provided")
    await api.ok("POST", "/_sandbox/reset")  # back to the configured shape
    assert (await api.ok("GET", "/_sandbox/errors"))["shape"] == "gateway"


@pytest.mark.parametrize(
    "body", [{"shape": "xml"}, {}, {"shape": "string", "extra": 1}, ["string"], "string"]
)
async def test_bad_error_shapes_are_refused(api: Api, body: Any) -> None:
    await api.fails("POST", "/_sandbox/errors", body, BAD, "one of gateway, string, object")
    assert (await api.ok("GET", "/_sandbox/errors"))["shape"] == "gateway"


def test_error_shape_in_the_config() -> None:
    app = create_sandbox(replace(CONFIG, error_shape="string"))
    assert app.state.sandbox.error_shape == "string"
    with pytest.raises(ValueError, match="error_shape must be one of gateway, string, object"):
        SandboxConfig(KEY, SECRET, error_shape="html")


@EACH_SHAPE
async def test_routing_comes_before_auth(api: Api) -> None:
    del api.client.headers["Authorization"]
    await api.fails("GET", "/members/nothing", None, NOT_FOUND, "Not Found")
    await api.fails("PATCH", MEMBERS, None, (501, 12), "Method Not Allowed")


@EACH_SHAPE
async def test_429_and_503_change_nothing(api: Api, state: State) -> None:
    await api.faults(rate_429=1.0, retry_after=3)
    answer = await api.client.post(MEMBERS, json=MEMBER)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "3")
    assert error_of(answer.json(), api.shape)[1] == "too many requests, retry later"
    await api.faults(rate_429=0, rate_503=1.0)
    await api.fails("POST", MEMBERS, MEMBER, DOWN, "unavailable")
    assert not state.members
    assert (state.faults_injected, state.calls) == ({"429": 1, "503": 1}, {"POST " + MEMBERS: 2})


async def test_faults_spare_admin_routes_and_pages(api: Api) -> None:
    assert (await api.faults(rate_503=1.0))["rate_503"] == 1.0
    assert (await api.ok("GET", "/_sandbox/faults"))["rate_503"] == 1.0
    assert (await api.client.get("/")).status_code == 200
    assert (await api.client.get("/pass/unknown")).status_code == 404
    await api.ok("GET", "/_sandbox/state")


async def test_latency(api: Api) -> None:
    await api.faults(latency_ms=60)
    started = time.perf_counter()
    await api.enrol()
    assert time.perf_counter() - started >= 0.06


async def statuses(api: Api, calls: int) -> list[int]:
    return [(await api.client.get(f"{MEMBERS}/id/x")).status_code for _ in range(calls)]


async def test_seeded_rates_are_deterministic(api: Api) -> None:
    await api.faults(rate_429=0.3, rate_503=0.2, seed=42)
    first = await statuses(api, 40)
    assert set(first) == {404, 429, 503}
    await api.faults(seed=42)
    assert await statuses(api, 40) == first
    await api.ok("POST", "/_sandbox/reset")  # faults off again
    assert set(await statuses(api, 10)) == {404}


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"rate_429": 1.5}, "rate_429 must be a number between 0 and 1"),
        ({"rate_429": 0.6, "rate_drop": 0.6}, "add up to more than 1"),
        ({"latency_ms": -1}, "latency_ms must be an integer"),
        ({"rate_503": "0.5"}, "rate_503 must be a number"),
        ({"slow": True}, "unknown fault setting 'slow'"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"duplicates": "teapot"}, "duplicates must be one of conflict, invalid, internal"),
        ([], "the body must be a JSON object"),
    ],
)
async def test_bad_fault_settings(api: Api, faults: Any, message: str) -> None:
    await api.fails("POST", "/_sandbox/faults", faults, BAD, message)
    assert (await api.ok("GET", "/_sandbox/faults"))["rate_429"] == 0


async def test_state_and_reset(api: Api) -> None:
    member_id = await api.enrol()
    await api.client.get(f"{MEMBERS}/id/x")
    snapshot = await api.ok("GET", "/_sandbox/state")
    assert snapshot["counts"]["members"] == 1 and snapshot["members"][0]["id"] == member_id
    assert snapshot["calls"] == {"POST /members/member": 1, "GET /members/member/id/{id}": 1}
    assert snapshot["faults"]["rate_drop"] == 0
    after = await api.ok("POST", "/_sandbox/reset")
    assert after["counts"]["members"] == 0 and after["counts"]["tiers"] == 4  # 3 + the draft's
    assert (await api.ok("GET", "/_sandbox/state"))["calls"] == {}


async def test_pass_pages(api: Api) -> None:
    member_id = await api.enrol(points=120, person={"displayName": "Ana <Diaz>"})
    page = await api.client.get(f"/pass/{member_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ("Sandbox Coffee Club", "Ana &lt;Diaz&gt;", ">120<", ">Base<", "<svg", member_id):
        assert text in page.text
    assert "<Diaz>" not in page.text
    assert page.text == (await api.client.get(f"/pass/{member_id}")).text  # a stable barcode

    coupon_id = (await api.ok("POST", COUPONS, COUPON))["id"]
    assert "10% off your next order" in (await api.client.get(f"/pass/{coupon_id}")).text
    ticket_id = (await api.ok("POST", TICKETS, ticket(seatInfo={"row": "4"})))["id"]
    assert "row 4" in (await api.client.get(f"/pass/{ticket_id}")).text

    index = (await api.client.get("/")).text
    assert all(f'href="pass/{i}"' in index for i in (member_id, coupon_id, ticket_id))
    await api.ok("DELETE", MEMBERS, {"id": member_id})
    gone = await api.client.get(f"/pass/{member_id}")
    assert gone.status_code == 404 and "No such pass" in gone.text


@pytest.fixture(params=["h11", "httptools"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, State]]:
    """The sandbox under a real uvicorn (each HTTP implementation) on a free loopback port."""
    app = create_sandbox(CONFIG)
    with serve_in_thread(app, http=request.param) as url:
        yield url, app.state.sandbox


async def test_drops_look_like_dropped_connections(server: tuple[str, State]) -> None:
    url, state = server
    headers = {"Authorization": mint_jwt(KEY, SECRET, int(time.time()))}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        api = Api(client)
        await api.faults(rate_drop=1.0)
        with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
            await client.post(MEMBERS, json=MEMBER)
        assert not state.members  # dropped before the operation: a retry is safe

        await api.faults(rate_drop=0, rate_drop_after=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(MEMBERS, json=MEMBER)
        assert len(state.members) == 1  # carried out, answer lost: what idempotency is for

        await api.faults(rate_drop_after=0)  # the same client reconnects and carries on
        await api.fails("POST", MEMBERS, MEMBER, EXISTS, "already exists")
    assert state.faults_injected == {"drop": 1, "drop_after": 1}

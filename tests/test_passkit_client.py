"""The PassKit client: credentials, retries within the budget, and PassKit errors translated."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest
import respx

from relay.errors import (
    PassKitAuth,
    PassKitConflict,
    PassKitNotFound,
    PassKitRejected,
    PassKitTimeout,
    PassKitUnavailable,
)
from relay.operations import CATALOG, build_request
from relay.passkit import Credentials, PassKitClient, raise_for_answer, retry_after_seconds

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, decode_jwt, make_settings
from .fakes import FakeClock

pytestmark = pytest.mark.anyio

LOOKUP = build_request(CATALOG["members.lookup"], {"programId": "p1", "externalId": "CRM-1"})
ENROL = build_request(
    CATALOG["members.enrol"], {"programId": "p1", "tierId": "base", "externalId": "CRM-1"}
)


def client_for(passkit: respx.MockRouter, clock: FakeClock, **env: str) -> PassKitClient:
    return PassKitClient(
        make_settings(**env),
        transport=httpx.MockTransport(passkit.async_handler),
        clock=clock.monotonic,
        wall_clock=clock.time,
        sleep=clock.sleep,
        jitter=lambda: 1.0,
    )


async def test_503_then_200_is_retried(passkit: respx.MockRouter) -> None:
    clock = FakeClock()
    route = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"id": "m1"})]
    )
    answer = await client_for(passkit, clock).send(LOOKUP)
    assert answer.status == 200 and answer.json == {"id": "m1"}
    assert route.call_count == 2
    assert clock.slept == [0.25]  # PassKit asks for a 250 ms back-off


async def test_429_waits_as_long_as_retry_after_says(passkit: respx.MockRouter) -> None:
    clock = FakeClock()
    passkit.get("/members/member/externalId/p1/CRM-1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json={"id": "m1"}),
        ]
    )
    answer = await client_for(passkit, clock).send(LOOKUP)
    assert answer.ok
    assert clock.slept == [3.0]


async def test_persistent_500_ends_unavailable_within_the_budget(passkit: respx.MockRouter) -> None:
    clock = FakeClock()
    route = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(500)
    )
    with pytest.raises(PassKitUnavailable) as err:
        await client_for(passkit, clock, RELAY_RETRY_BUDGET="20").send(LOOKUP)
    assert err.value.status == 503
    assert err.value.retry_after and err.value.retry_after >= 1
    assert sum(clock.slept) < 20  # gave up inside Zapier's 30 s
    assert route.call_count >= 5  # backed off exponentially: .25 .5 1 2 4 4 …
    assert clock.slept[:4] == [0.25, 0.5, 1.0, 2.0]


async def test_retry_after_longer_than_the_budget_gives_up_at_once(
    passkit: respx.MockRouter,
) -> None:
    clock = FakeClock()
    route = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "120"})
    )
    with pytest.raises(PassKitUnavailable) as err:
        await client_for(passkit, clock).send(LOOKUP)
    assert route.call_count == 1 and clock.slept == []
    assert err.value.retry_after == 120


async def test_connection_errors_are_retried(passkit: respx.MockRouter) -> None:
    clock = FakeClock()
    passkit.post("/members/member").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            # A pooled keep-alive connection the server had already closed:
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.Response(200, json={"id": "new"}),
        ]
    )
    answer = await client_for(passkit, clock).send(ENROL)
    assert answer.json == {"id": "new"} and answer.attempts == 3


async def test_read_timeout_is_not_retried(passkit: respx.MockRouter) -> None:
    clock = FakeClock()
    route = passkit.post("/members/member").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PassKitTimeout) as err:
        await client_for(passkit, clock).send(ENROL)
    assert err.value.status == 504 and route.call_count == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7", 0) == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480) == 10
    assert retry_after_seconds("soon", 0) is None
    assert retry_after_seconds(None, 0) is None


async def test_jwt_has_passkit_claims_and_is_reused(passkit: respx.MockRouter) -> None:
    clock = FakeClock(start=1_800_000_000)
    route = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    client = client_for(passkit, clock)
    await client.send(LOOKUP)
    first = route.calls.last.request.headers["authorization"]
    header, claims, signature = decode_jwt(first)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {"uid": PASSKIT_KEY, "iat": 1_800_000_000, "exp": 1_800_003_600}
    signing_input = first.rsplit(".", 1)[0].encode()
    assert signature == hmac.new(PASSKIT_SECRET.encode(), signing_input, hashlib.sha256).digest()
    clock.now += 600
    await client.send(LOOKUP)
    assert route.calls.last.request.headers["authorization"] == first  # reused
    clock.now += 3000  # within 5 minutes of expiry: renewed
    await client.send(LOOKUP)
    assert route.calls.last.request.headers["authorization"] != first


def test_long_lived_token_is_sent_as_bearer() -> None:
    settings = make_settings(PASSKIT_API_KEY="", PASSKIT_API_SECRET="", PASSKIT_TOKEN="lltoken")
    assert Credentials(settings).header() == "Bearer lltoken"


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (
            400,
            {"code": 3, "message": "invalid tierId", "details": []},
            PassKitRejected,
            "passkit_rejected",
        ),
        (400, {"error": {"code": 3, "message": "bad email"}}, PassKitRejected, "passkit_rejected"),
        (
            401,
            {"error": {"code": 16, "message": "no jwt token provided"}},
            PassKitAuth,
            "passkit_auth",
        ),
        (403, {"code": 7, "message": "denied"}, PassKitAuth, "passkit_auth"),
        (404, {"code": 5, "message": "member not found"}, PassKitNotFound, "not_found"),
        (409, {"code": 6, "message": "member already exists"}, PassKitConflict, "conflict"),
        (400, {"code": 6, "message": "externalId already exists"}, PassKitConflict, "conflict"),
    ],
)
def test_passkit_errors_become_relay_errors(status, body, error, code) -> None:
    from relay.passkit import PassKitAnswer

    with pytest.raises(error) as err:
        raise_for_answer(PassKitAnswer(status, body, {}), CATALOG["members.enrol"])
    assert err.value.code == code
    message = body.get("error", body)["message"]
    if error is not PassKitAuth:
        assert message in err.value.message  # PassKit's own words are quoted

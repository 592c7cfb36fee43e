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
from relay.passkit.client import Credentials, PassKitClient, raise_for_answer, retry_after_seconds
from relay.passkit.operations import CATALOG, build_request
from relay.sandbox import ERROR_SHAPES, SandboxError

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


def test_credentials_reuse_a_token_under_15_seconds_old_and_mint_anew_after() -> None:
    clock = FakeClock(start=1_800_000_000.7)
    credentials = Credentials(make_settings(), clock.time)
    first = credentials.header()
    assert first is not None
    header, claims, signature = decode_jwt(first)
    assert header == {"alg": "HS256", "typ": "JWT"}
    # iat 10 s back (a PassKit clock a little behind ours), exp a minute from now.
    assert claims == {"uid": PASSKIT_KEY, "iat": 1_799_999_990, "exp": 1_800_000_060}
    signing_input = first.rsplit(".", 1)[0].encode()
    assert signature == hmac.new(PASSKIT_SECRET.encode(), signing_input, hashlib.sha256).digest()
    clock.now += 14.9  # under 15 s old: its iat 25 s back at most, PassKit refuses at 60 s
    assert credentials.header() == first
    for step in (0.1, 59, 3000):  # 15 s old or more: never the token of an earlier call
        clock.now += step
        token = credentials.header()
        assert token is not None and token != first
        claims = decode_jwt(token)[1]
        assert claims["iat"] == int(clock.now) - 10 and claims["exp"] == claims["iat"] + 70
        first = token
    clock.now += 1
    assert credentials.header(fresh=True) != first  # after a refusal for its age: minted anew


async def test_each_attempt_carries_a_fresh_jwt(passkit: respx.MockRouter) -> None:
    clock = FakeClock(start=1_800_000_000)
    route = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "30"}),
            httpx.Response(200, json={"id": "m1"}),
        ]
    )
    client = client_for(passkit, clock, RELAY_RETRY_BUDGET="60")
    assert (await client.send(LOOKUP)).ok
    sent = [decode_jwt(call.request.headers["authorization"])[1] for call in route.calls]
    assert [claims["iat"] for claims in sent] == [1_799_999_990, 1_800_000_020]


def refusal(shape: str, message: str, status: int = 401) -> httpx.Response:
    """PassKit's 401 in one of the shapes live PassKit answers with."""
    return httpx.Response(status, json=SandboxError(16, message).body(shape))


@pytest.mark.parametrize("shape", ERROR_SHAPES)
@pytest.mark.parametrize(
    "message",
    ["jwt was issued too long ago", "token is expired", "Token used before issued",
     "Token is expired"],
)  # fmt: skip
async def test_a_token_refused_for_its_age_is_minted_anew_once(
    passkit: respx.MockRouter, shape: str, message: str
) -> None:
    clock = FakeClock()
    answers = [refusal(shape, message), httpx.Response(200, json={"id": "new"})]

    def answer_in_two_seconds(request: httpx.Request) -> httpx.Response:
        clock.now += 2
        return answers.pop(0)

    route = passkit.post("/members/member").mock(side_effect=answer_in_two_seconds)
    answer = await client_for(passkit, clock).send(ENROL)
    assert answer.json == {"id": "new"} and answer.attempts == 2
    assert route.call_count == 2 and clock.slept == []  # at once: nothing to wait for
    first, second = (decode_jwt(call.request.headers["authorization"]) for call in route.calls)
    assert second[1]["iat"] == first[1]["iat"] + 2 == int(clock.now) - 2 - 10  # minted anew
    assert second[2] != first[2]


async def test_a_token_refused_twice_is_not_tried_a_third_time(
    passkit: respx.MockRouter,
) -> None:
    route = passkit.post("/members/member").mock(
        return_value=refusal("string", "jwt was issued too long ago")
    )
    answer = await client_for(passkit, FakeClock()).send(ENROL)
    assert (answer.status, answer.attempts, route.call_count) == (401, 2, 2)
    with pytest.raises(PassKitAuth) as err:
        raise_for_answer(answer, CATALOG["members.enrol"])
    assert err.value.code == "passkit_auth"


@pytest.mark.parametrize("shape", ERROR_SHAPES)
@pytest.mark.parametrize(
    "message",
    ["signature is invalid", "invalid uid: no API key matches this token",
     "no jwt token provided"],
)  # fmt: skip
async def test_wrong_credentials_are_not_retried(
    passkit: respx.MockRouter, shape: str, message: str
) -> None:
    route = passkit.post("/members/member").mock(return_value=refusal(shape, message))
    answer = await client_for(passkit, FakeClock()).send(ENROL)
    assert (answer.status, route.call_count) == (401, 1)
    with pytest.raises(PassKitAuth) as err:
        raise_for_answer(answer, CATALOG["members.enrol"])
    assert err.value.code == "passkit_auth"


async def test_a_long_lived_token_is_not_retried_on_401(passkit: respx.MockRouter) -> None:
    route = passkit.post("/members/member").mock(return_value=refusal("object", "token is expired"))
    env = {"PASSKIT_API_KEY": "", "PASSKIT_API_SECRET": "", "PASSKIT_TOKEN": "lltoken"}
    answer = await client_for(passkit, FakeClock(), **env).send(ENROL)
    assert (answer.status, route.call_count) == (401, 1)  # minting anew would send the same


async def test_no_second_token_once_the_budget_is_spent(passkit: respx.MockRouter) -> None:
    clock = FakeClock()

    def slow_refusal(request: httpx.Request) -> httpx.Response:
        clock.now += 25  # PassKit took longer than the whole budget to say no
        return refusal("gateway", "jwt was issued too long ago")

    route = passkit.post("/members/member").mock(side_effect=slow_refusal)
    answer = await client_for(passkit, clock, RELAY_RETRY_BUDGET="20").send(ENROL)
    assert (answer.status, route.call_count) == (401, 1)


def test_long_lived_token_is_sent_as_bearer() -> None:
    settings = make_settings(PASSKIT_API_KEY="", PASSKIT_API_SECRET="", PASSKIT_TOKEN="lltoken")
    assert Credentials(settings).header() == "Bearer lltoken"


@pytest.mark.parametrize("shape", ERROR_SHAPES)
@pytest.mark.parametrize(
    ("status", "grpc", "message", "error", "code"),
    [
        (400, 3, "invalid tierId", PassKitRejected, "passkit_rejected"),
        (400, 3, "bad email", PassKitRejected, "passkit_rejected"),
        (401, 16, "no jwt token provided", PassKitAuth, "passkit_auth"),
        (401, 16, "jwt was issued too long ago", PassKitAuth, "passkit_auth"),
        (403, 7, "denied", PassKitAuth, "passkit_auth"),
        (404, 5, "member not found", PassKitNotFound, "not_found"),
        (409, 6, "member already exists", PassKitConflict, "conflict"),
        # Status alone: "already exists" is never read from PassKit's words (see test_exists).
        (400, 6, "externalId already exists", PassKitRejected, "passkit_rejected"),
    ],
)
def test_passkit_errors_become_relay_errors(shape, status, grpc, message, error, code) -> None:
    from relay.passkit.client import PassKitAnswer

    body = SandboxError(grpc, message).body(shape)  # each shape live PassKit answers in
    with pytest.raises(error) as err:
        raise_for_answer(PassKitAnswer(status, body, {}), CATALOG["members.enrol"])
    assert err.value.code == code
    if error is not PassKitAuth:
        assert message in err.value.message  # PassKit's own words are quoted

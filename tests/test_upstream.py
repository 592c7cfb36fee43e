"""The production HTTP client (aiohttp) against real servers on loopback: what each network
failure becomes, and the PassKit client's retries riding over dropped connections."""

from __future__ import annotations

import time

import httpx
import pytest

from relay.passkit.client import PassKitClient, mint_jwt
from relay.passkit.operations import CATALOG, build_request
from relay.passkit.upstream import AiohttpUpstream, UpstreamTimeout, UpstreamUnreachable
from relay.sandbox import DEMO_PROGRAM_ID, State

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, make_settings
from .processes import free_port

pytestmark = pytest.mark.anyio
LOOKUP = f"/members/member/externalId/{DEMO_PROGRAM_ID}/nobody"


def auth() -> dict[str, str]:
    return {"Authorization": mint_jwt(PASSKIT_KEY, PASSKIT_SECRET, int(time.time()))}


async def test_answers_come_back_as_bytes(sandbox: tuple[str, State]) -> None:
    upstream = AiohttpUpstream(sandbox[0], {"Accept": "application/json"})
    try:
        reply = await upstream.request("GET", LOOKUP, None, auth(), timeout=5, connect_timeout=5)
    finally:
        await upstream.aclose()
    assert reply.status == 404 and b"not found" in reply.body
    assert reply.headers["content-type"].startswith("application/json")


async def test_refused_connection_is_unreachable() -> None:
    upstream = AiohttpUpstream(f"http://127.0.0.1:{free_port()}", {})
    with pytest.raises(UpstreamUnreachable):
        await upstream.request("GET", "/", None, {}, timeout=2, connect_timeout=2)
    await upstream.aclose()


async def test_slow_answer_is_a_timeout(sandbox: tuple[str, State]) -> None:
    httpx.post(f"{sandbox[0]}/_sandbox/faults", json={"latency_ms": 1500})
    upstream = AiohttpUpstream(sandbox[0], {})
    with pytest.raises(UpstreamTimeout):
        await upstream.request("GET", LOOKUP, None, auth(), timeout=0.3, connect_timeout=2)
    await upstream.aclose()


async def test_dropped_connections_are_unreachable_and_retried(
    sandbox: tuple[str, State],
) -> None:
    url, state = sandbox
    httpx.post(f"{url}/_sandbox/faults", json={"rate_drop": 1.0})
    upstream = AiohttpUpstream(url, {})
    with pytest.raises(UpstreamUnreachable):
        await upstream.request("GET", LOOKUP, None, auth(), timeout=2, connect_timeout=2)
    await upstream.aclose()

    # Half the calls dropped mid-answer: the client's retries still get every answer.
    httpx.post(f"{url}/_sandbox/faults", json={"rate_drop": 0.5, "seed": 3})
    client = PassKitClient(make_settings(PASSKIT_API_URL=url))
    lookup = build_request(
        CATALOG["members.lookup"], {"externalId": "nobody", "programId": DEMO_PROGRAM_ID}
    )
    try:
        answers = [await client.send(lookup) for _ in range(20)]
    finally:
        await client.aclose()
    assert all(a.status == 404 for a in answers)
    assert any(a.attempts > 1 for a in answers) and state.faults_injected

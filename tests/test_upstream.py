"""The production HTTP client (aiohttp) against real servers on loopback: what each network
failure becomes, and the PassKit client's retries riding over dropped connections."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from relay.passkit.client import PassKitClient, mint_jwt
from relay.passkit.operations import CATALOG, build_request
from relay.passkit.upstream import AiohttpUpstream, UpstreamTimeout, UpstreamUnreachable
from relay.sandbox import DEMO_PROGRAM_ID, State

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, ROOT, make_settings
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


def test_aiohttp_is_loaded_by_the_first_call_not_at_start_up() -> None:
    """aiohttp takes ~100 ms to import, a fifth of the start-up budget: the server's modules do
    not load it; the first PassKit call does, on a worker thread (the boot's account check), and
    two first calls at once share one session."""
    code = textwrap.dedent("""
        import asyncio, sys
        import relay.app, relay.commands.cli
        from relay.passkit.upstream import AiohttpUpstream, UpstreamUnreachable
        print("aiohttp" in sys.modules)

        async def first_calls():
            upstream = AiohttpUpstream("http://127.0.0.1:9", {})

            async def call():
                try:
                    await upstream.request("GET", "/", None, {}, timeout=2, connect_timeout=2)
                except UpstreamUnreachable:  # nothing listens there: the call was made
                    pass

            try:  # two at once while aiohttp loads: one session between them
                await asyncio.gather(call(), call())
                import aiohttp, gc
                print(sum(isinstance(o, aiohttp.ClientSession) for o in gc.get_objects()))
            finally:
                await upstream.aclose()
            print("aiohttp" in sys.modules)

        asyncio.run(first_calls())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1", "True"]

"""Relay processes as Heroku runs them (`relay serve`), sharing one database, in front of the
PassKit sandbox under uvicorn: revocation and idempotency across processes, and kill -9."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.store import open_store

from .conftest import BASE_ENV
from .processes import ServerProcess
from .servers import relay_process

pytestmark = pytest.mark.anyio


def relay_env(sandbox_url: str, database_url: str) -> dict[str, str]:
    return {"PASSKIT_API_URL": sandbox_url, "DATABASE_URL": database_url}


def cli(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "relay", *argv],
        env={**BASE_ENV, **env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture
def relays(
    database_url: str, sandbox: tuple[str, State], tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    """Two `relay serve` processes sharing the database of the test's `database_url`."""
    env = relay_env(sandbox[0], database_url)
    started = [relay_process(env, tmp_path / f"relay-{n}.log") for n in (1, 2)]
    try:
        for relay in started:
            relay.start()
        yield started
    finally:
        for relay in started:
            relay.stop()


def mint_url(relay: ServerProcess, template: str, *params: str) -> str:
    argv = ["url", template, "--base-url", relay.url]
    for param in params:
        argv += ["--param", param]
    return cli(relay.env, *argv).strip().splitlines()[-1]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_processes_share_revocation_and_idempotency(
    relays: list[ServerProcess], sandbox: tuple[str, State]
) -> None:
    one, two = relays
    state = sandbox[1]
    path = mint_url(one, "member-enrol", f"program_id={DEMO_PROGRAM_ID}", "tier_id=base")
    path = path.removeprefix(one.url)

    # 50 replays of one Zapier step, split across both processes, all at once.
    async with httpx.AsyncClient(timeout=30) as client:
        data = {"external_id": "CRM-50", "email": "ana@example.com", "idempotency_key": "run-1"}
        answers = await asyncio.gather(
            *(client.post(f"{(one, two)[n % 2].url}{path}", data=data) for n in range(50))
        )
    assert [a.status_code for a in answers] == [200] * 50, answers[0].text
    assert state.calls["POST /members/member"] == 1
    assert len(state.members) == 1
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(not a.json()["duplicate"] for a in answers) == 1

    # Revoked through the registry both processes share: both refuse within a few seconds.
    cli(one.env, "revoke", f"{one.url}{path}")
    async with httpx.AsyncClient(timeout=10) as client:
        for relay in (two, one):
            for _ in range(100):
                answer = await client.post(f"{relay.url}{path}", data=data)
                if answer.status_code == 401:
                    break
                await asyncio.sleep(0.1)
            assert answer.json()["error"]["code"] == "revoked_token", relay.url


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_kill_9_mid_load_loses_no_answered_delivery(
    database_url: str, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    relay = relay_process(relay_env(sandbox[0], database_url), tmp_path / "relay.log").start()
    path = mint_url(relay, "member-upsert", f"program_id={DEMO_PROGRAM_ID}", "tier_id=base")
    path = path.removeprefix(relay.url)
    answered: list[str] = []

    async def sender(client: httpx.AsyncClient, worker: int) -> None:
        for n in range(10_000):
            data = {"external_id": f"W{worker}-{n}", "email": f"w{worker}.{n}@example.com"}
            try:
                answer = await client.post(f"{relay.url}{path}", data=data)
            except httpx.TransportError:
                return  # the process is gone
            if answer.status_code == 200:
                answered.append(answer.json()["request_id"])

    try:
        async with httpx.AsyncClient(timeout=10) as client:
            senders = [asyncio.create_task(sender(client, w)) for w in range(16)]
            while len(answered) < 300:
                await asyncio.sleep(0.01)
            relay.kill()
            await asyncio.wait_for(asyncio.gather(*senders), 30)
    finally:
        relay.kill()

    store = await open_store(database_url)
    try:
        recorded = {r.request_id for r in await store.list_deliveries(limit=100_000)}
    finally:
        await store.close()
    assert len(answered) >= 300
    missing = [rid for rid in answered if rid not in recorded]
    assert missing == [], f"{len(missing)} of {len(answered)} answered deliveries not recorded"

"""PassKit's rate (PASSKIT_RATE_LIMIT, relay.passkit.outbound): the slot arithmetic on a frozen
clock, the shared row on a real PostgreSQL, and two `relay serve` processes on one database that
together never send the sandbox more than the limit, and both hold still when it answers 429."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay.errors import PassKitBusy
from relay.passkit.outbound import RETAKES, LocalSlots, OutboundLimiter
from relay.sandbox import DEMO_PROGRAM_ID
from relay.settings import ConfigError
from relay.store import open_store
from relay.store.slots import Slot, Slots

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, make_settings
from .fakes import FakeClock
from .processes import ServerProcess
from .servers import relay_process
from .test_processes import mint_url, relay_env

pytestmark = pytest.mark.anyio


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


class Calls:
    """A limiter on a fake clock (shared `slots`: another process's limiter on the same
    database), and when each caller was let through."""

    def __init__(self, rate: float, slots: Slots | None = None, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.limiter = OutboundLimiter(
            rate,
            (lambda: _ready(slots)) if slots else None,
            clock=self.clock.monotonic,
            sleep=self.clock.sleep,
        )
        self.at: list[float] = []

    async def call(self, within: float = 20.0) -> None:
        await self.limiter.acquire(within)
        self.at.append(self.clock.now)


async def _ready(slots: Slots) -> Slots:
    return slots


# -- the arithmetic, on a clock that only moves when someone sleeps --------------------------


async def test_calls_at_the_same_moment_are_spaced_one_over_the_rate() -> None:
    calls = Calls(rate=10)
    for _ in range(5):
        await calls.call()
    start = calls.at[0]
    assert [round(at - start, 6) for at in calls.at] == [0.0, 0.1, 0.2, 0.3, 0.4]


async def test_no_one_second_window_holds_more_than_the_rate() -> None:
    clock = FakeClock()
    slots = LocalSlots(clock.monotonic)
    groups = [Calls(20, slots, clock) for _ in range(3)]  # three processes, one database
    for n in range(60):
        await groups[n % 3].call()
    times = [at for group in groups for at in group.at]
    assert len(times) == 60
    # 20 a second; a 21st only when a window's two ends fall on calls (to the float's last bit).
    assert most_in_one_second(times) in (20, 21)
    assert max(times) - min(times) == pytest.approx(59 / 20)


async def test_a_caller_who_cannot_get_a_turn_in_time_is_told_when_to_come_back() -> None:
    calls = Calls(rate=2)
    for _ in range(4):
        await calls.call(within=10)  # 0, 0.5, 1.0, 1.5 s
    with pytest.raises(PassKitBusy) as busy:
        await calls.limiter.acquire(0.3)  # the next turn is 0.5 s away
    error = busy.value
    assert (error.status, error.code, error.retry_after) == (503, "passkit_busy", 1)
    assert "nothing was sent" in error.message and "Zapier" in error.hint
    # Refused, it took no turn: the next caller gets the turn it would have had.
    before = calls.clock.now
    await calls.call(within=10)
    assert calls.at[-1] - before == pytest.approx(0.5)


async def test_a_pause_holds_every_caller_sharing_the_slots() -> None:
    clock = FakeClock()
    slots = LocalSlots(clock.monotonic)
    one = OutboundLimiter(10, lambda: _ready(slots), clock=clock.monotonic, sleep=clock.sleep)
    two = OutboundLimiter(10, lambda: _ready(slots), clock=clock.monotonic, sleep=clock.sleep)
    await one.acquire(5)
    await one.pause(2.0)  # one saw a 429 with Retry-After: 2
    started = clock.now
    await two.acquire(5)
    assert clock.now - started == pytest.approx(2.0)


async def test_a_caller_asleep_for_its_turn_when_a_pause_begins_waits_for_the_pause() -> None:
    clock = FakeClock()
    slots = LocalSlots(clock.monotonic)
    waker = OutboundLimiter(1, lambda: _ready(slots), clock=clock.monotonic, sleep=clock.sleep)
    await waker.acquire(5)  # t=0; the next turn is at t=1

    async def sleep_and_see_a_429(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.slept) == 1:  # another process got a 429 while this one slept
            await slots.pause(3.0)

    sleeper = OutboundLimiter(1, lambda: _ready(slots), clock=clock.monotonic,
                              sleep=sleep_and_see_a_429)  # fmt: skip
    started = clock.now
    await sleeper.acquire(10)
    assert clock.now - started == pytest.approx(1.0 + 3.0)  # its turn, then the pause


async def test_a_process_that_overslept_its_turn_takes_a_later_one() -> None:
    clock = FakeClock()

    async def oversleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.slept) == 1:
            clock.now += 0.3  # the process was busy elsewhere: woken 0.3 s late

    limiter = OutboundLimiter(10, clock=clock.monotonic, sleep=oversleep)
    await limiter.acquire(5)  # t=0
    await limiter.acquire(5)  # its turn at 0.1, woken at 0.4: too late; the next turn is 0.2
    assert clock.slept == pytest.approx([0.1]) and clock.now - 1_800_000_000.0 == pytest.approx(0.4)
    # It took the turn at 0.4 (now) instead: the next caller's is 0.1 later.
    await limiter.acquire(5)
    assert clock.now - 1_800_000_000.0 == pytest.approx(0.5)


async def test_rate_zero_lets_every_call_through_at_once() -> None:
    calls = Calls(rate=0)
    for _ in range(100):
        await calls.call(within=0)
    assert set(calls.at) == {calls.clock.now} and calls.clock.slept == []


def test_the_setting_defaults_to_ten_a_second_and_can_be_raised_or_turned_off() -> None:
    assert make_settings(PASSKIT_RATE_LIMIT="").passkit_rate_limit == 10.0
    assert make_settings(PASSKIT_RATE_LIMIT="40").passkit_rate_limit == 40.0
    assert make_settings(PASSKIT_RATE_LIMIT="off").passkit_rate_limit == 0.0
    for wrong in ("fast", "-5", "inf"):
        with pytest.raises(ConfigError, match="PASSKIT_RATE_LIMIT"):
            make_settings(PASSKIT_RATE_LIMIT=wrong)


# -- the shared row, on a real PostgreSQL ---------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_concurrent_takers_on_postgres_never_share_a_slot(database_url: str) -> None:
    stores = [await open_store(database_url) for _ in range(2)]  # two processes' pools
    try:
        shared: list[Slots] = []
        for store in stores:
            slots = store.outbound_slots()
            assert slots is not None  # PostgreSQL shares them
            shared.append(slots)

        async def take(slots: Slots) -> float:
            taken = await slots.take(0.05, 60)
            assert taken.taken
            return time.monotonic() + taken.wait  # when this process would call

        calls = sorted(await asyncio.gather(*(take(shared[n % 2]) for n in range(40))))
        gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
        # 0.05 s apart, give or take the trip of each answer back and when this event loop
        # gets round to reading it (tens of ms on a loaded CI machine): two takers sharing a
        # slot would be ~0 apart, so half an interval tells them apart; the whole span holds
        # every slot one after the other.
        assert min(gaps) >= 0.05 / 2, gaps
        assert calls[-1] - calls[0] >= 39 * 0.05 - 0.05, calls
        refused = await shared[0].take(0.05, 0.5)
        assert not refused.taken and refused.wait > 1.0
        await shared[1].pause(5.0)
        assert 4.0 < await shared[0].paused_for() <= 5.0
    finally:
        for store in stores:
            await store.close()


# -- two relay processes, one PostgreSQL, the sandbox counting ------------------------------

RATE = 20
DELIVERIES = 300


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """The sandbox in a process of its own, so its record of when each call arrived is not
    skewed by this test's 300 requests competing with it for one interpreter."""
    argv = [sys.executable, "-m", "relay", "sandbox", "--port", "{port}"]
    env = {"PASSKIT_API_KEY": PASSKIT_KEY, "PASSKIT_API_SECRET": PASSKIT_SECRET}
    server = ServerProcess(argv, env, "/_sandbox/state", log=tmp_path / "sandbox.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def limited_relays(
    database_url: str, sandbox_process: ServerProcess, tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    env = relay_env(sandbox_process.url, database_url) | {
        "PASSKIT_RATE_LIMIT": str(RATE),
        "RELAY_RATE_LIMIT": "off",  # the hook's own inbound limit is not what is measured
        "RELAY_RETRY_BUDGET": "12",  # turns up to 9 s away; later ones are told to come back
    }
    started = [relay_process(env, tmp_path / f"relay-{n}.log") for n in (1, 2)]
    try:
        for relay in started:
            relay.start()
        yield started
    finally:
        for relay in started:
            relay.stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_processes_keep_to_one_shared_rate_and_pause_together(
    limited_relays: list[ServerProcess], sandbox_process: ServerProcess, database_url: str
) -> None:
    one, two = limited_relays
    path = mint_url(one, "member-upsert", f"program_id={DEMO_PROGRAM_ID}", "tier_id=base")
    path = path.removeprefix(one.url)
    limits = httpx.Limits(max_connections=DELIVERIES)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        sandbox = sandbox_process.url
        await client.post(f"{sandbox}/_sandbox/reset")  # minting read the account: not counted

        async def deliver(n: int) -> httpx.Response:
            data = {"external_id": f"RATE-{n}", "email": f"rate.{n}@example.com"}
            return await client.post(f"{(one, two)[n % 2].url}{path}", data=data)

        answers = await asyncio.gather(*(deliver(n) for n in range(DELIVERIES)))
        calls = (await client.get(f"{sandbox}/_sandbox/calls")).json()
        members = (await client.get(f"{sandbox}/_sandbox/state")).json()["counts"]["members"]

    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(200) >= RATE * 6, statuses.count(200)  # most of the budget's turns
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "passkit_busy"
            assert int(answer.headers["Retry-After"]) >= 1
    assert calls["mostInOneSecond"] <= RATE * 1.1, calls["mostInOneSecond"]
    assert members == statuses.count(200)

    # None lost: every answer, 200 or 503, is in the delivery log both processes write.
    store = await open_store(database_url)
    try:
        logged = {r.request_id for r in await store.list_deliveries(limit=10_000)}
    finally:
        await store.close()
    assert {answer.json()["request_id"] for answer in answers} <= logged

    # A 429 with Retry-After: 2 seen by one process holds both.
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{sandbox}/_sandbox/reset")
        await client.post(f"{sandbox}/_sandbox/faults", json={"retry_after": 2, "next_429": 1})

        async def steady(relay: ServerProcess, n: int) -> httpx.Response:
            await asyncio.sleep(n * 0.05)  # a steady stream into both processes
            data = {"external_id": f"PAUSE-{n}", "email": f"pause.{n}@example.com"}
            return await client.post(f"{relay.url}{path}", data=data)

        paused = await asyncio.gather(*(steady((one, two)[n % 2], n) for n in range(60)))
        calls = (await client.get(f"{sandbox}/_sandbox/calls")).json()
    assert [a.status_code for a in paused] == [200] * 60, paused[0].text
    (told_at, fault), *_ = calls["faults"]
    assert fault == "429"
    arrivals = [at for at, _ in calls["calls"]]
    # A call already on its way when the 429 was answered may land just after it.
    during = [at for at in arrivals if told_at + 0.05 < at < told_at + 2.0]
    assert during == [], f"{len(during)} calls reached PassKit during the 2 s pause"
    assert [at for at in arrivals if at >= told_at + 2.0], "calls resumed after the pause"


async def test_a_process_late_every_time_calls_after_two_retakes() -> None:
    """A process so busy that every answer reaches it late would otherwise ask for turns
    forever: it takes a later one twice (RETAKES), then calls."""
    clock = FakeClock()
    slots = LocalSlots(clock.monotonic)
    take = slots.take
    asked: list[float] = []

    async def slow_answer(interval: float, latest: float) -> Slot:
        asked.append(clock.now)
        slot = await take(interval, latest)
        clock.now += 0.2  # the answer reaches this busy process 0.2 s later, every time
        return slot

    slots.take = slow_answer  # type: ignore[method-assign]
    limiter = OutboundLimiter(10, lambda: _ready(slots), clock=clock.monotonic, sleep=clock.sleep)
    await limiter.acquire(5)
    assert len(asked) == 1 + RETAKES

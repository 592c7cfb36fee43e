"""RELAY_ALERT_URL: one message when a hook starts failing, one when it works again, never a
slower delivery, one alert between processes sharing a database (relay.delivery.alerts)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.app import create_app
from relay.delivery.alerts import verdict
from relay.store import DeliveryRecord, HookRecord, open_store

from .conftest import make_settings, mint
from .servers import serve_in_thread

pytestmark = pytest.mark.anyio

HOOK = "hk_alerts0001"
ENROL = mint("member-enrol", HOOK, program_id="p1", tier_id="base")
GOOD = {"external_id": "CRM-1", "email": "ana@example.com"}
T0 = 1_790_000_000.0


@pytest.fixture
def inbox() -> Iterator[tuple[str, list[str]]]:
    """A Slack-like incoming webhook on loopback: its URL and the texts it received."""
    texts: list[str] = []

    async def receive(request: Request) -> Response:
        texts.append((await request.json())["text"])
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/hook", receive, methods=["POST"])])) as url:
        yield f"{url}/hook", texts


def ok_passkit(passkit: respx.MockRouter) -> None:
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def relay_app(passkit: respx.MockRouter, **env: str) -> Starlette:
    """The relay, its alerts let through to the loopback inbox (RELAY_ALLOW_URLS)."""
    settings = make_settings(RELAY_ALLOW_URLS="http://127.0.0.1", **env)
    return create_app(settings, transport=httpx.MockTransport(passkit.async_handler))


def asgi(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://relay.test")


async def test_three_failures_alert_once_and_a_success_recovers(
    tmp_path: Path, passkit: respx.MockRouter, inbox: tuple[str, list[str]]
) -> None:
    alert_url, texts = inbox
    database = f"sqlite:///{tmp_path / 'relay.db'}"
    store = await open_store(database)
    await store.add_hook(HookRecord(id=HOOK, template="member-enrol", label="Gym sign-ups"))
    await store.close()
    ok_passkit(passkit)
    app = relay_app(passkit, RELAY_ALERT_URL=alert_url, DATABASE_URL=database)
    with serve_in_thread(app, lifespan="on") as url:  # the lifespan starts the sender
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):
                answer = await client.post(ENROL, json={"email": "ana@example.com"})
                assert answer.status_code == 422, answer.text
            await until(lambda: len(texts) >= 1)
            await asyncio.sleep(0.3)
            assert len(texts) == 1, texts
            alert = texts[0]
            assert "“Gym sign-ups”" in alert and "is failing" in alert
            assert "The external ID is missing. Fix: Map External ID in the zap's Data" in alert
            assert alert.endswith("(technical: missing_field, HTTP 422)")
            assert "1 failure since" in alert
            link = f"https://relay.example.com/admin/deliveries?hook={HOOK}&outcome=failed"
            assert link in alert
            assert "ana@example.com" not in alert

            assert (await client.post(ENROL, json=GOOD)).status_code == 200
            assert (await client.post(ENROL, json=GOOD)).status_code == 200
            await until(lambda: len(texts) >= 2)
            await asyncio.sleep(0.3)
    assert len(texts) == 2, texts
    assert "“Gym sign-ups”" in texts[1] and "works again" in texts[1]
    assert "after 3 failures" in texts[1]


async def test_a_hook_without_label_is_named_by_its_template_in_words(
    passkit: respx.MockRouter, inbox: tuple[str, list[str]]
) -> None:
    alert_url, texts = inbox
    passkit.route().mock(return_value=httpx.Response(503))  # every call: PassKit is down
    app = relay_app(passkit, RELAY_ALERT_URL=alert_url, RELAY_RETRY_BUDGET="0.1")
    services = app.state.services
    await services.alerts.start()
    try:
        async with asgi(app) as client:
            answer = await client.post(ENROL, json=GOOD)
            assert answer.status_code >= 500
            # a dry run, a rate limit or a replay are not the hook failing
            dry = await client.post(ENROL + "?dry_run=1", json={"email": "x@y.z"})
            assert dry.status_code == 422
            await until(lambda: len(texts) >= 1)
    finally:
        await services.aclose()
    assert len(texts) == 1
    assert f"(member-enrol, {HOOK})" in texts[0] and "passkit_" in texts[0]


@pytest.mark.parametrize("kind", ["down", "hangs"])
async def test_a_dead_or_slow_alert_url_never_slows_deliveries(
    kind: str, passkit: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if kind == "hangs":
        sock.listen(16)  # connections are taken, never answered
    port = sock.getsockname()[1]
    if kind == "down":
        sock.close()  # nothing listens: connection refused
    ok_passkit(passkit)
    app = relay_app(passkit, RELAY_ALERT_URL=f"http://127.0.0.1:{port}/hook")
    services = app.state.services
    services.alerts.timeout = 1.0
    await services.alerts.start()
    caplog.set_level(logging.WARNING, logger="relay.alerts")
    try:
        async with asgi(app) as client:
            for n in range(12):  # each failure or recovery queues an alert
                hook = mint("member-enrol", f"hk_slow{n % 4:05d}", program_id="p1", tier_id="base")
                started = time.perf_counter()
                answer = await client.post(hook, json=GOOD if n % 2 else {"email": "x@y.z"})
                assert answer.status_code == (200 if n % 2 else 422)
                assert time.perf_counter() - started < 0.5
        await asyncio.sleep(1.3 if kind == "hangs" else 0.3)
        started = time.perf_counter()
    finally:
        await services.aclose()
        sock.close()
    assert time.perf_counter() - started < 3.5  # shutdown waits at most its grace
    lines = [r.getMessage() for r in caplog.records if r.name == "relay.alerts"]
    assert lines and all("RELAY_ALERT_URL unreachable" in line for line in lines), lines
    assert all(str(port) not in line for line in lines)  # the URL is a credential


async def test_two_instances_on_one_database_alert_once(
    database_url: str, passkit: respx.MockRouter, inbox: tuple[str, list[str]]
) -> None:
    alert_url, texts = inbox
    ok_passkit(passkit)
    apps = [relay_app(passkit, RELAY_ALERT_URL=alert_url, DATABASE_URL=database_url)
            for _ in range(2)]  # fmt: skip
    for app in apps:
        await app.state.services.alerts.start()
    try:
        clients = [asgi(app) for app in apps]
        for n in range(6):
            answer = await clients[n % 2].post(ENROL, json={"email": "x@y.z"})
            assert answer.status_code == 422
        await asyncio.gather(*(app.state.services.alerts.stop() for app in apps))
        assert len(texts) == 1, texts
        for app in apps:
            await app.state.services.alerts.start()
        for client in clients:  # both saw it fail; only one gets the recovery
            assert (await client.post(ENROL, json=GOOD)).status_code == 200
        await asyncio.gather(*(app.state.services.alerts.stop() for app in apps))
        for client in clients:
            await client.aclose()
    finally:
        for app in apps:
            await app.state.services.aclose()
    assert len(texts) == 2, texts
    assert "after 6 failures" in texts[1]


async def test_the_store_alerts_once_an_hour_while_failing(database_url: str) -> None:
    one = await open_store(database_url)
    two = await open_store(database_url)
    try:
        first = await one.note_hook_failure("hk_a", T0)
        assert first.alert and first.failures == 1 and first.failing_since == T0
        assert not (await two.note_hook_failure("hk_a", T0)).alert  # same moment, other process
        assert not (await one.note_hook_failure("hk_a", T0 + 3599)).alert
        again = await two.note_hook_failure("hk_a", T0 + 3600)
        assert again.alert and again.failures == 4 and again.alerted_at == T0 + 3600
        assert await one.failing_hooks() == {"hk_a"}
        cleared = await two.clear_hook_failure("hk_a")
        assert cleared is not None and cleared.failures == 4
        assert await one.clear_hook_failure("hk_a") is None
        assert await one.failing_hooks() == set()
    finally:
        await one.close()
        await two.close()


def record(outcome: str, code: str | None = None, **extra: str) -> DeliveryRecord:
    return DeliveryRecord(at=T0, source="hook", hook_id="hk_a", template="member-enrol",
                          operation="", outcome=outcome, status=200 if code is None else 400,  # type: ignore[arg-type]
                          latency_ms=1.0, request_id="req_1", error_code=code, request=None,
                          passkit_request=None, passkit_response=None, **extra)  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "code", "counts"),
    [
        ("failed", "missing_field", True),
        ("failed", "invalid_body", True),
        ("failed", "passkit_unavailable", True),
        ("failed", "template_error", True),
        ("failed", "not_configured", True),
        ("failed", "rate_limited", None),
        ("failed", "client_gone", None),
        ("duplicate", None, None),
        ("dry_run", None, None),
        ("ok", None, False),
        ("skipped", None, False),
    ],
)
def test_what_counts_as_failing(outcome: str, code: str | None, counts: bool | None) -> None:
    assert verdict(record(outcome, code)) is counts
    assert verdict(record(outcome, code), dry_run=True) is None
    assert verdict(record(outcome, code, replay_of="dl_1")) is None

"""What a PassKit events URL's receiver answers decides the next try (relay.events.forwarder):
410 Gone (a deleted Catch Hook) stops the retries after one try and alerts once; 429 waits for
its Retry-After. Real relay, real receiver and a real alert inbox over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.app import create_app
from relay.delivery.services import sealer_for
from relay.events.forwarder import retry_after
from relay.store import PassKitEvent, open_store

from .conftest import make_settings
from .servers import serve_in_thread
from .test_alerts import inbox  # noqa: F401 - a fixture
from .test_event_families import new_events_path
from .test_passkit_events import WEBHOOK_SECRET, send, wait_for


class Answers:
    """A receiver answering `statuses` in turn (then 200), noting when each try came."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.tries: list[float] = []

    async def answer(self, request: Request) -> Response:
        self.tries.append(time.monotonic())
        status = self.statuses.pop(0) if self.statuses else 200
        return JSONResponse({"status": status}, status_code=status, headers=self.headers)


async def stored(database: str, event_id: str) -> PassKitEvent | None:
    settings = make_settings(DATABASE_URL=database)
    store = await open_store(database, sealer=sealer_for(settings))
    try:
        return await store.get_event(event_id)
    finally:
        await store.close()


def serve(answers: Answers) -> Iterator[str]:
    with serve_in_thread(
        Starlette(routes=[Route("/catch", answers.answer, methods=["POST"])])
    ) as url:
        yield url + "/catch"


@pytest.fixture
def relay_with_alerts(
    tmp_path: Path,
    inbox: tuple[str, list[str]],  # noqa: F811
) -> Iterator[tuple[str, str, list[str]]]:
    alert_url, texts = inbox
    database = f"sqlite:///{tmp_path / 'relay.db'}"
    app = create_app(make_settings(
        DATABASE_URL=database, PASSKIT_WEBHOOK_SECRET=WEBHOOK_SECRET, RELAY_FORWARD_RETRY="0.2",
        PASSKIT_API_URL="http://127.0.0.1:9", RELAY_ALERT_URL=alert_url,
        RELAY_ALLOW_URLS="http://127.0.0.1",  # the receiver and the alert inbox are on loopback
    ))  # fmt: skip
    with serve_in_thread(app, lifespan="on") as url:
        yield url, database, texts


def test_a_410_stops_the_retries_after_one_try_and_alerts_once(
    relay_with_alerts: tuple[str, str, list[str]],
) -> None:
    relay, database, texts = relay_with_alerts
    gone = Answers(410, 410, 410, 410)
    for receiver in serve(gone):
        url = relay + new_events_path(receiver)
        first = send(url)
        second = send(url, body=b'{"event": "PASS_EVENT_UNINSTALLED", "pass": {"id": "p2"}}')
        assert first.status_code == second.status_code == 200, second.text
        wait_for(lambda: len(gone.tries) == 2 and len(texts) == 1)
        time.sleep(1.0)  # retries (every 0.2 s) and a second alert would have come by now
        assert len(gone.tries) == 2  # one try each
    assert len(texts) == 1
    assert "the Catch Hook is gone: turn the zap on or mint a new URL" in texts[0]
    assert "/catch" not in texts[0]  # the catch hook's path is its credential
    event = asyncio.run(stored(database, first.json()["event_id"]))
    assert event is not None and (event.state, event.attempts, event.last_status) == (
        "failed", 1, 410)  # fmt: skip
    assert "Catch Hook is gone" in (event.last_error or "")


def test_a_429_is_tried_again_when_retry_after_says(
    relay_with_alerts: tuple[str, str, list[str]],
) -> None:
    relay, _, texts = relay_with_alerts
    busy = Answers(429, headers={"Retry-After": "2"})
    for receiver in serve(busy):
        assert send(relay + new_events_path(receiver)).status_code == 200
        wait_for(lambda: len(busy.tries) == 2, timeout=15)
    assert busy.tries[1] - busy.tries[0] >= 1.9  # not the 0.2 s the retries start at
    assert texts == []


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120", 0.0) == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("soon", 0.0) is None and retry_after(None, 0.0) is None


def test_other_4xx_are_retried_as_before(relay_with_alerts: tuple[str, str, list[str]]) -> None:
    relay, _, _ = relay_with_alerts
    refused = Answers(404, 404)
    for receiver in serve(refused):
        assert send(relay + new_events_path(receiver)).status_code == 200
        wait_for(lambda: len(refused.tries) == 3, timeout=15)  # two 404s, then taken

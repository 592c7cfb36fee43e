"""PassKit's token rules through real servers: the relay under uvicorn calling the sandbox
under uvicorn, which refuses a JWT 60 s after its `iat` ("jwt was issued too long ago") as live
PassKit does.

Time is moved, not slept: the sandbox reads `Shifted.time` (create_sandbox's clock) and so do
the relay's credentials. A minute passing moves both. Moving only the sandbox would make the
relay's clock a minute slow, which no token can survive; what matters is that a token minted at
start and reused is refused a minute later, while one minted per call is not.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.app import create_app
from relay.passkit.client import Credentials, mint_jwt, passkit_message
from relay.passkit.contract import rpcs
from relay.sandbox import DEMO_PROGRAM_ID, ERROR_SHAPES, SandboxConfig, State, create_sandbox

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, make_settings, mint
from .servers import serve_in_thread

ENROL = mint("member-enrol", program_id=DEMO_PROGRAM_ID, tier_id="base")
EARN = mint("member-points-earn", program_id=DEMO_PROGRAM_ID)
LOOKUP = mint("member-lookup", program_id=DEMO_PROGRAM_ID)


class Shifted:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


LISTS = re.compile(
    "|".join(re.sub(r"\{\w+\}", "[^/]+", call.path) + "$" for call in rpcs() if call.stream)
)


class Recorder:
    """Wraps the sandbox: the Authorization header, status and body of every PassKit call the
    relay makes (not of the test's own, sent with an `X-Test` header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ()))
        if (
            scope["type"] != "http"
            or scope["path"].startswith("/_sandbox/")
            or b"x-test" in headers
            or LISTS.match(scope["path"])  # the start-up connection check (relay.passkit.account)
        ):
            await self.app(scope, receive, send)
            return
        call: dict[str, Any] = {
            "path": scope["path"],
            "authorization": headers.get(b"authorization", b"").decode(),
            "status": 0,
            "body": b"",
        }
        self.calls.append(call)

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                call["status"] = message["status"]
            elif message["type"] == "http.response.body":
                call["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, capture)

    def refusals(self) -> list[str]:
        return [passkit_message(json.loads(c["body"])) for c in self.calls if c["status"] == 401]


class Live:
    def __init__(self, sandbox_url: str, state: State, recorder: Recorder, relay_url: str) -> None:
        self.sandbox_url = sandbox_url
        self.state = state
        self.recorder = recorder
        self.relay = httpx.Client(base_url=relay_url, timeout=30)

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.relay.post(path, data=fields)

    def error_shape(self, shape: str) -> None:
        answer = httpx.post(f"{self.sandbox_url}/_sandbox/errors", json={"shape": shape})
        assert answer.status_code == 200, answer.text


@pytest.fixture
def shifted() -> Shifted:
    return Shifted()


@contextmanager
def run_live(
    folder: Path, sandbox_clock: Shifted, relay_clock: Any, **settings: str
) -> Iterator[Live]:
    sandbox = create_sandbox(
        SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET), clock=sandbox_clock.time
    )
    recorder = Recorder(sandbox)
    with serve_in_thread(recorder) as sandbox_url:
        relay_settings = make_settings(
            PASSKIT_API_URL=sandbox_url,
            PASSKIT_PASS_URL=f"{sandbox_url}/pass",
            DATABASE_URL=f"sqlite:///{folder / 'relay.db'}",
            **settings,
        )
        relay = create_app(relay_settings)
        # The relay's wall clock, as far as its tokens go (PassKitClient's `wall_clock`).
        relay.state.services.client.credentials = Credentials(relay_settings, relay_clock)
        with serve_in_thread(relay, lifespan="on") as relay_url:
            live = Live(sandbox_url, sandbox.state.sandbox, recorder, relay_url)
            try:
                yield live
            finally:
                live.relay.close()


@pytest.fixture
def live(tmp_path: Path, shifted: Shifted) -> Iterator[Live]:
    with run_live(tmp_path, shifted, shifted.time) as live:
        yield live


def test_a_relay_up_for_more_than_a_minute_still_gets_its_calls_accepted(
    live: Live, shifted: Shifted
) -> None:
    enrolled = live.post(ENROL, external_id="CRM-1", email="ana@example.com")
    assert enrolled.status_code == 200, enrolled.text
    first_token = live.recorder.calls[-1]["authorization"]
    hour_long = mint_jwt(PASSKIT_KEY, PASSKIT_SECRET, int(shifted.time()))  # the old relay's

    shifted.offset += 61  # a minute and a second later, for the relay and PassKit alike
    earned = live.post(EARN, external_id="CRM-1", points="5")
    assert earned.status_code == 200, earned.text
    # A token minted at start and reused now is refused: the hour-long one the relay used to
    # keep for 55 minutes for its age, the relay's own first one for its exp (60 s on).
    lookup = f"{live.sandbox_url}/members/member/externalId/{DEMO_PROGRAM_ID}/CRM-1"
    for token, refused in ((hour_long, "jwt was issued too long ago"),
                           (first_token, "token is expired")):  # fmt: skip
        stale = httpx.get(lookup, headers={"Authorization": token, "X-Test": "direct"})
        assert (stale.status_code, stale.json()["message"]) == (401, refused)
    shifted.offset += 3600  # past the hour the old relay reused its token for
    found = live.post(LOOKUP, external_id="CRM-1")
    assert found.status_code == 200 and found.json()["result"]["points"] == 5

    # Each call was accepted at the first try, each with a token of its own.
    assert [c["status"] for c in live.recorder.calls] == [200, 200, 200]
    assert live.recorder.refusals() == []
    tokens = [c["authorization"] for c in live.recorder.calls]
    assert len(set(tokens)) == 3


class LateOnce:
    """A relay clock whose first reading is 55 s behind (a clock NTP then steps), then right:
    the first token's iat is 65 s back, its exp not yet reached."""

    def __init__(self, clock: Shifted) -> None:
        self.clock = clock
        self.readings = 0

    def time(self) -> float:
        self.readings += 1
        return self.clock.time() - (55 if self.readings == 1 else 0)


@pytest.mark.parametrize("shape", ERROR_SHAPES)
def test_a_token_refused_as_too_old_is_minted_anew_once(
    tmp_path: Path, shifted: Shifted, shape: str
) -> None:
    with run_live(tmp_path, shifted, LateOnce(shifted).time) as live:
        live.error_shape(shape)
        answer = live.post(ENROL, external_id="CRM-1", email="ana@example.com")
        assert answer.status_code == 200, answer.text
        assert [c["status"] for c in live.recorder.calls] == [401, 200]
        assert live.recorder.refusals() == ["jwt was issued too long ago"]
        assert live.state.calls["POST /members/member"] == 2  # one retry, one member
        assert len(live.state.members) == 1


@pytest.mark.parametrize("shape", ERROR_SHAPES)
def test_a_wrong_secret_is_refused_once_and_not_retried(
    tmp_path: Path, shifted: Shifted, shape: str
) -> None:
    wrong = {"PASSKIT_API_SECRET": "not-the-account-secret"}
    with run_live(tmp_path, shifted, shifted.time, **wrong) as live:
        live.error_shape(shape)
        answer = live.post(ENROL, external_id="CRM-1", email="ana@example.com")
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "passkit_auth"
        assert live.recorder.refusals() == ["signature is invalid"]
        assert live.state.calls["POST /members/member"] == 1
        assert not live.state.members

"""PassKit events out to Zapier and Make: PassKit's signature checked (relay.events.signature),
events flattened (relay.events.flatten) and forwarded through the durable outbox
(relay.events.forwarder) to a real receiver over HTTP, against real relay servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.access.tokens import Hook, HookSigner
from relay.app import create_app
from relay.delivery.templating import TemplateLibrary
from relay.events.flatten import flatten, sentence, wanted
from relay.events.signature import InvalidPassKitSignature, sign, verify
from relay.hooks.minting import MintError, mint
from relay.passkit.client import mint_jwt
from relay.sandbox import DEMO_PROGRAM_ID, SandboxConfig, create_sandbox

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, ROOT, SECRET_KEY, make_settings
from .processes import ServerProcess
from .servers import relay_process, serve_in_thread

WEBHOOK_SECRET = "pk-webhook-signing-secret-0123456789"
ADMIN_PASSWORD = "events-console-password"
BODY = json.dumps({
    "event": "PASS_EVENT_INSTALLED",
    "pass": {
        "id": "4hGq8AbCdEfGhIjKlMnOpQ", "classId": "3iGxtXJd7x9fU2yYWcdBvQ",
        "protocol": "MEMBERSHIP", "externalId": "HS-4242",
        "personDetails": {"forename": "Mara", "surname": "Quist",
                          "emailAddress": "mara@example.com"},
        "metadata": {"firstInstalledAt": "2026-11-23T12:00:00Z"},
        "recordData": {"members.tier.id": "base", "members.member.points": "30",
                       "members.member.metaData.favouriteClass": "Spin"},
    },
}).encode()  # fmt: skip


# -- the signature, sans I/O ------------------------------------------------------------------


def test_sign_then_verify_gives_the_nonce() -> None:
    header = sign(BODY, WEBHOOK_SECRET, nonce="1795000000")
    assert header.startswith("t=1795000000,v1=")
    assert verify(BODY, header, [WEBHOOK_SECRET], now=1795000010) == "1795000000"


def _digest(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha256).digest()


@pytest.mark.parametrize("separator", [b".", b""])
@pytest.mark.parametrize(
    "encode",
    [
        lambda d: d.hex(),
        lambda d: d.hex().upper(),
        lambda d: base64.b64encode(d).decode(),
        lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
    ],
    ids=["hex", "HEX", "base64", "base64url"],
)
@pytest.mark.parametrize("prefix", ["v1=", "s=", ""])
def test_every_unambiguous_reading_of_the_article_is_accepted(
    separator: bytes, encode: Any, prefix: str
) -> None:
    nonce = "a1b2c3d4e5"
    signature = encode(_digest(WEBHOOK_SECRET.encode(), nonce.encode() + separator + BODY))
    assert verify(BODY, f"n={nonce},{prefix}{signature}", [WEBHOOK_SECRET]) == nonce


def test_a_base64_secret_may_be_the_key_bytes_and_secrets_rotate() -> None:
    secret = base64.b64encode(b"k" * 64).decode()
    header = "t=x1," + _digest(b"k" * 64, b"x1." + BODY).hex()
    assert verify(BODY, header, ["old-secret-0123456789", secret]) == "x1"


@pytest.mark.parametrize(
    ("header", "secret", "now", "why"),
    [
        (None, WEBHOOK_SECRET, None, "no x-passkit-signature"),
        ("garbage", WEBHOOK_SECRET, None, "not a nonce and a signature"),
        ("t=1,zzzz", WEBHOOK_SECRET, None, "neither hex nor base64"),
        (sign(BODY, "another-secret-entirely"), WEBHOOK_SECRET, None, "does not match"),
        (sign(BODY + b" ", WEBHOOK_SECRET), WEBHOOK_SECRET, None, "does not match"),
        (sign(BODY, WEBHOOK_SECRET, nonce="1795000000"), WEBHOOK_SECRET, 1795000000 + 600,
         "10 minutes"),
        (sign(BODY, WEBHOOK_SECRET, nonce="1795000000000"), WEBHOOK_SECRET, 1795000000 - 900,
         "15 minutes"),
    ],
    ids=["missing", "one-part", "bad-encoding", "wrong-secret", "changed-body", "stale-s",
         "stale-ms"],
)  # fmt: skip
def test_unsigned_wrong_or_stale_is_refused_saying_why(
    header: str | None, secret: str, now: float | None, why: str
) -> None:
    with pytest.raises(InvalidPassKitSignature, match=why) as refused:
        verify(BODY, header, [secret], now=now)
    assert refused.value.status == 401


# -- flattening -------------------------------------------------------------------------------


def test_an_event_is_flattened_to_the_keys_a_zap_maps() -> None:
    flat = flatten(json.loads(BODY), event_id="evt_1", received_at="2026-11-23T12:00:01Z")
    assert flat == {
        "event": "installed", "event_id": "evt_1", "received_at": "2026-11-23T12:00:01Z",
        "pass_id": "4hGq8AbCdEfGhIjKlMnOpQ", "external_id": "HS-4242", "protocol": "membership",
        "first_name": "Mara", "last_name": "Quist", "email": "mara@example.com",
        "tier": "base", "points": "30", "program_id": "3iGxtXJd7x9fU2yYWcdBvQ",
        "installed_at": "2026-11-23T12:00:00Z", "meta_favouriteClass": "Spin",
        "sample": False,  # the one key added beside them (relay.events.sample sends True)
    }  # fmt: skip
    assert sentence(flat) == "Pass installed by Mara Quist"


@pytest.mark.parametrize(
    ("raw", "method", "name"),
    [("PASS_EVENT_UNINSTALLED", "PUT", "uninstalled"), (1, "POST", "created"),
     ("32", "DELETE", "deleted"), ("pass.installed", "PUT", "installed"),
     (None, "DELETE", "deleted"), ("PASS_EVENT_RECORD_UPDATED", "PUT", "updated")],
)  # fmt: skip
def test_event_names_numbers_and_verbs_read_alike(raw: Any, method: str, name: str) -> None:
    flat = flatten({"event": raw, "pass": {"id": "p"}}, event_id="e", received_at="t",
                   method=method)  # fmt: skip
    assert flat["event"] == name
    assert wanted(flat, f"{name},other") and wanted(flat, "")
    assert not wanted(flat, "never")


def test_minting_checks_forward_to_and_events() -> None:
    library = TemplateLibrary(ROOT / "templates")
    signer = HookSigner([SECRET_KEY])
    params = {"forward_to": "https://hooks.zapier.com/hooks/catch/1/a/", "events": "installed"}
    _, target, url = mint(signer, library, "passkit-events", params, "https://relay.example.com")
    assert url.startswith("https://relay.example.com/passkit/") and target.kind == "passkit"
    with pytest.raises(MintError) as refused:
        mint(signer, library, "passkit-events", {"forward_to": "ftp://x", "events": "eaten"},
             "https://relay.example.com")  # fmt: skip
    assert "forward_to must be a web address" in str(refused.value)
    assert "events eaten unknown" in str(refused.value)


# -- end to end: a real relay, a real receiver ------------------------------------------------


@dataclass
class Receiver:
    """A Zapier catch hook stand-in: records every POST; answers 503 while `down`."""

    url: str = ""
    down_until: float = 0.0
    got: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def ids(self) -> list[str]:
        return [body["event_id"] for body in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    seen = Receiver()

    async def catch(request: Request) -> Response:
        if time.monotonic() < seen.down_until:
            seen.refused += 1
            return JSONResponse({"status": "down"}, status_code=503)
        body = await request.json()
        assert request.headers["x-relay-event-id"] == body["event_id"]
        seen.got.append(body)
        return JSONResponse({"status": "success"})

    app = Starlette(routes=[Route("/catch", catch, methods=["POST"])])
    with serve_in_thread(app) as url:
        seen.url = url + "/catch"
        yield seen


LOOPBACK = "http://127.0.0.1"  # the receivers' address, let past the URL guard


def events_path(forward_to: str, events: str = "", hook_id: str = "hk_passkit0001") -> str:
    params = {"forward_to": forward_to} | ({"events": events} if events else {})
    hook = Hook(id=hook_id, template="passkit-events", params=params)
    return "/passkit/" + HookSigner([SECRET_KEY]).mint(hook)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[str]:
    app = create_app(make_settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'relay.db'}", PASSKIT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        RELAY_FORWARD_RETRY="0.2", PASSKIT_API_URL="http://127.0.0.1:9",
        RELAY_ADMIN_PASSWORD=ADMIN_PASSWORD, RELAY_ALLOW_URLS=LOOPBACK,
    ))  # fmt: skip
    with serve_in_thread(app, lifespan="on") as url:
        yield url


def send(
    url: str, body: bytes = BODY, header: str | None = "sign", method: str = "PUT"
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header == "sign":
        header = sign(body, WEBHOOK_SECRET)
    if header is not None:
        headers["x-passkit-signature"] = header
    return httpx.request(method, url, content=body, headers=headers, timeout=10)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_signed_event_is_forwarded_once_with_flat_keys(relay: str, receiver: Receiver) -> None:
    url = relay + events_path(receiver.url)
    answer = send(url)
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"] == "installed" and answer.json()["queued"] is True
    again = send(url, header=answer.request.headers["x-passkit-signature"])  # PassKit resends
    assert again.json()["duplicate"] is True
    wait_for(lambda: receiver.got)
    time.sleep(0.6)  # a second forward would have arrived by now
    assert len(receiver.got) == 1
    got = receiver.got[0]
    assert got["event_id"] == answer.json()["event_id"]
    assert (got["event"], got["email"], got["first_name"], got["tier"]) == (
        "installed",
        "mara@example.com",
        "Mara",
        "base",
    )
    assert got["meta_favouriteClass"] == "Spin"


@pytest.mark.parametrize(
    "header",
    [
        None,
        sign(BODY, "not-the-secret"),
        sign(BODY, WEBHOOK_SECRET, nonce=str(int(time.time()) - 3600)),
    ],
    ids=["unsigned", "wrong", "stale"],
)
def test_unsigned_wrong_or_stale_events_are_401_and_never_forwarded(
    relay: str, receiver: Receiver, header: str | None
) -> None:
    answer = send(relay + events_path(receiver.url), header=header)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_signature"
    time.sleep(0.6)
    assert receiver.got == []


def test_only_the_chosen_events_are_forwarded(relay: str, receiver: Receiver) -> None:
    created = BODY.replace(b"PASS_EVENT_INSTALLED", b"PASS_EVENT_RECORD_CREATED")
    answer = send(relay + events_path(receiver.url, events="uninstalled"), body=created)
    assert answer.json()["ignored"] is True
    time.sleep(0.6)
    assert receiver.got == []


def test_a_receiver_down_for_a_while_gets_the_event_once_it_recovers(
    relay: str, receiver: Receiver
) -> None:
    receiver.down_until = time.monotonic() + 1.5
    answer = send(relay + events_path(receiver.url))
    assert answer.status_code == 200
    wait_for(lambda: receiver.got, timeout=15)
    time.sleep(0.6)
    assert receiver.refused >= 2  # retried with backoff while down …
    assert receiver.ids() == [answer.json()["event_id"]]  # … and delivered exactly once


def test_the_console_says_what_happened_and_resends(relay: str, receiver: Receiver) -> None:
    answer = send(relay + events_path(receiver.url))
    wait_for(lambda: receiver.got)
    with httpx.Client(base_url=relay, timeout=10) as console:
        form = console.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        console.post("/admin/login", data={"csrf": csrf.group(1), "password": ADMIN_PASSWORD})
        page = console.get("/admin/events")
        assert page.status_code == 200
        assert "Pass installed by Mara Quist" in page.text
        assert "forwarded to 127.0.0.1 at" in page.text
        # The delivery log's row says who too, as the events page does.
        listed = console.get("/admin/deliveries").text
        assert "Pass installed by Mara Quist: queued for your Zap or scenario" in listed
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        event_id = answer.json()["event_id"]
        asked = console.post(f"/admin/events/{event_id}/resend", data={"csrf": csrf.group(1)})
        assert asked.status_code == 200 and "Send this event again?" in asked.text
        time.sleep(0.3)
        assert len(receiver.got) == 1  # asking sends nothing
        resent = console.post(f"/admin/events/{event_id}/resend",
                              data={"csrf": csrf.group(1), "confirmed": "yes"})  # fmt: skip
        assert resent.status_code == 303
    wait_for(lambda: len(receiver.got) == 2)
    assert receiver.ids() == [event_id, event_id]  # the same id: the receiver can tell


def enrol_and_install_at_the_sandbox(
    hook_url: str, wait: Callable[[], bool], **member: Any
) -> None:
    """A member (HS-7, Mara Quist, with `member`'s extra fields) enrolled at a sandbox whose
    webhooks go to `hook_url`, and its pass installed: the sandbox signs and sends PassKit's
    events ("created", then "installed") as PassKit would; `wait` until they arrived."""
    sandbox_app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(sandbox_app) as sandbox_url:
        httpx.post(f"{sandbox_url}/_sandbox/webhook",
                   json={"url": hook_url, "secret": WEBHOOK_SECRET})  # fmt: skip
        token = mint_jwt(PASSKIT_KEY, PASSKIT_SECRET, int(time.time()) - 10)
        enrol = {"programId": DEMO_PROGRAM_ID, "tierId": "base", "externalId": "HS-7",
                 "person": {"forename": "Mara", "surname": "Quist",
                            "emailAddress": "mara@example.com"}} | member  # fmt: skip
        made = httpx.post(f"{sandbox_url}/members/member", json=enrol,
                          headers={"Authorization": token})  # fmt: skip
        assert made.status_code == 200, made.text
        fired = httpx.post(f"{sandbox_url}/_sandbox/events",
                           json={"event": "installed", "external_id": "HS-7"})  # fmt: skip
        assert fired.json()["status"] == 200
        wait_for(wait)


def test_the_sandbox_fires_created_and_installed_signed_as_passkit_does(
    relay: str, receiver: Receiver
) -> None:
    enrol_and_install_at_the_sandbox(relay + events_path(receiver.url),
                                     lambda: len(receiver.got) == 2)  # fmt: skip
    got = {body["event"]: body for body in receiver.got}
    assert set(got) == {"created", "installed"}
    assert got["installed"]["external_id"] == "HS-7"
    assert got["installed"]["first_name"] == "Mara"
    assert got["installed"]["program_id"] == DEMO_PROGRAM_ID


# -- two processes on one PostgreSQL ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_processes_never_forward_one_event_twice(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "PASSKIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "RELAY_FORWARD_RETRY": "0.1", "PASSKIT_API_URL": "http://127.0.0.1:9",
           "RELAY_ALLOW_URLS": LOOPBACK}  # fmt: skip
    relays: list[ServerProcess] = [relay_process(env, tmp_path / f"r{n}.log") for n in (1, 2)]
    try:
        for each in relays:
            each.start()
        path = events_path(receiver.url)
        bodies = [BODY.replace(b"HS-4242", f"HS-{n}".encode()) for n in range(60)]
        async with httpx.AsyncClient(timeout=20) as client:
            sends = []
            for body in bodies:
                header = sign(body, WEBHOOK_SECRET)
                for relay in relays:  # every event reaches both processes, as a resend would
                    sends.append(client.put(relay.url + path, content=body,
                                            headers={"x-passkit-signature": header}))  # fmt: skip
            answers = await asyncio.gather(*sends)
        assert {a.status_code for a in answers} == {200}
        wait_for(lambda: len(receiver.got) >= 60, timeout=30)
        await asyncio.sleep(1.0)
        ids = receiver.ids()
        assert len(ids) == len(set(ids)) == 60
        assert sorted(b["external_id"] for b in receiver.got) == sorted(
            f"HS-{n}" for n in range(60)
        )
    finally:
        for each in relays:
            each.stop()


def test_a_broken_character_from_passkit_is_mended_not_a_500(
    relay: str, receiver: Receiver
) -> None:
    """Half an emoji (a lone surrogate escape) in PassKit's signed body cannot be sealed, sent
    or stored as it is: like PassKit's other text, it is mended to U+FFFD and forwarded."""
    body = BODY.replace(b'"Mara"', b'"Mara \\ud83d"')
    answer = send(relay + events_path(receiver.url), body)
    assert answer.status_code == 200, answer.text
    wait_for(lambda: receiver.got)
    assert receiver.got[0]["first_name"] == "Mara \ufffd"


def test_the_sandboxs_event_settings_refuse_a_bad_body_and_never_clear_the_url() -> None:
    """A body that is not a JSON object, or one without `url`, is a 400 saying what to send:
    it used to be a 500, or to turn the sandbox's events off without a word."""
    sandbox_app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(sandbox_app) as sandbox_url:
        webhook = f"{sandbox_url}/_sandbox/webhook"
        assert httpx.post(webhook, json={"url": "http://127.0.0.1:9/x"}).status_code == 200
        for body in (b"{not json", b"[1, 2]", b'"text"', b'{"secret": "s"}', b'{"url": 5}'):
            refused = httpx.post(webhook, content=body)
            assert refused.status_code == 400, body
            assert refused.json()["error"], body
        assert httpx.get(webhook).json()["url"] == "http://127.0.0.1:9/x"  # kept
        fired = httpx.post(f"{sandbox_url}/_sandbox/events", content=b"{not json")
        assert fired.status_code == 400 and "JSON object" in fired.json()["error"]
        assert httpx.post(webhook, json={"url": ""}).json() == {"url": ""}  # off, on purpose

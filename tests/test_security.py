"""Issue 20, on real servers: the console's sign-in holds under concurrent guesses and huge
bodies; the URLs the relay calls on an operator's say-so are checked where it connects; PassKit
events cannot be replayed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.access.tokens import Hook, HookSigner
from relay.access.urlguard import UrlGuard, UrlRefused, checked_transport
from relay.app import create_app
from relay.delivery.services import sealer_for
from relay.delivery.templating import TemplateLibrary
from relay.events.signature import nonce_time, sign
from relay.hooks.minting import MintError, mint
from relay.store import HookRecord, open_store

from .conftest import API, BASE_ENV, ROOT, SECRET_KEY, make_settings
from .conftest import mint as mint_url
from .servers import relay_process, serve_in_thread

PASSWORD = "correct horse battery staple"
LIMIT = 5  # relay.admin.session.LoginLimiter.attempts


def _csrf(base: str) -> str:
    form = httpx.get(f"{base}/admin/login", timeout=10)
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found, form.text[:300]
    return found.group(1)


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kb / 1024


# -- the sign-in limit ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_wrong_logins_share_one_budget_across_processes(
    database_url: str, tmp_path: Path
) -> None:
    """200 wrong passwords at once from one address, spread over two relay processes on one
    database: at most the limit is checked (401), every other one is refused unread (429),
    and then even the right password waits."""
    env = {"RELAY_ADMIN_PASSWORD": PASSWORD, "DATABASE_URL": database_url}
    first = relay_process(env, tmp_path / "one.log").start()
    second = relay_process(env, tmp_path / "two.log").start()
    try:
        csrf = _csrf(first.url)
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def guess(n: int) -> int:
                base = (first, second)[n % 2].url
                form = {"csrf": csrf, "password": f"guess {n}"}
                return (await client.post(f"{base}/admin/login", data=form)).status_code

            statuses = await asyncio.gather(*(guess(n) for n in range(200)))
            checked = statuses.count(401)
            print(f"checked {checked} of 200 concurrent wrong passwords")  # for the report
            assert 1 <= checked <= LIMIT, statuses
            assert statuses.count(429) == 200 - checked, statuses
            right = await client.post(f"{second.url}/admin/login",
                                      data={"csrf": csrf, "password": PASSWORD})  # fmt: skip
            assert right.status_code == 429
            assert "Too many sign-in attempts" in right.text
            assert "set-cookie" not in right.headers
    finally:
        first.stop()
        second.stop()


def _post_raw(port: int, head: bytes, body_size: int, chunk: bytes) -> bytes:
    """Send `head` then `body_size` bytes of `chunk`s, however early the server answers; the
    answer's first bytes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(head)
        sent = 0
        try:
            while sent < body_size:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body: as it should
        try:
            return sock.recv(4096)
        except ConnectionResetError:
            return b""
    finally:
        sock.close()


def test_huge_login_posts_do_not_grow_memory(tmp_path: Path) -> None:
    """50 MB multipart sign-in posts (declared, and chunked with no length) are refused after a
    few KiB: the server's peak RSS grows by less than 30 MB."""
    env = {"RELAY_ADMIN_PASSWORD": PASSWORD, "DYNO": "web.1"}  # DYNO: X-Forwarded-For trusted
    server = relay_process(env, tmp_path / "relay.log").start()
    try:
        assert server.process is not None
        csrf = _csrf(server.url)
        for n in range(3):  # warm: a few ordinary wrong passwords
            answer = httpx.post(f"{server.url}/admin/login", timeout=10,
                                headers={"X-Forwarded-For": f"198.51.100.{n}"},
                                data={"csrf": csrf, "password": "nope"})  # fmt: skip
            assert answer.status_code == 401
        before = _peak_rss_mb(server.process.pid)
        size = 50 * 1024 * 1024
        boundary = b"relayboundary"
        part = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        for n in range(4):
            framing = (
                f"Content-Length: {size}\r\n" if n % 2 == 0 else "Transfer-Encoding: chunked\r\n"
            )
            head = (
                "POST /admin/login HTTP/1.1\r\nHost: relay\r\n"
                f"X-Forwarded-For: 203.0.113.{n}\r\n{framing}"
                f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\n\r\n"
            ).encode()
            block = b"x" * 65536
            if n % 2 == 0:
                chunk = block
                head += part
            else:
                chunk = b"%x\r\n%s\r\n" % (len(block), block)
                head += b"%x\r\n%s\r\n" % (len(part), part)
            said = _post_raw(server.port, head, size, chunk)
            assert said.startswith(b"HTTP/1.1 413"), said[:200]
        after = _peak_rss_mb(server.process.pid)
        print(f"peak RSS before {before:.1f} MB, after 4 x 50 MB posts {after:.1f} MB")
        assert after - before < 30
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_the_login_form_is_bounded_in_fields(tmp_path: Path) -> None:
    env = {"RELAY_ADMIN_PASSWORD": PASSWORD, "DYNO": "web.1"}
    server = relay_process(env, tmp_path / "relay.log").start()
    try:
        csrf = _csrf(server.url)
        many = {"csrf": csrf, "password": "nope", **{f"f{n}": "x" for n in range(20)}}
        answer = httpx.post(f"{server.url}/admin/login", data=many, timeout=10)
        assert answer.status_code == 413
        assert "not the sign-in form" in answer.text
        right = httpx.post(f"{server.url}/admin/login", timeout=10,
                           data={"csrf": csrf, "password": PASSWORD})  # fmt: skip
        assert right.status_code == 303
    finally:
        server.stop()


# -- where the relay may send (relay.access.urlguard) --------------------------------------------

# Loopback in every spelling a resolver reads, a private address, link-local, and the rest.
REFUSED_HOSTS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.0.1",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "10.0.0.5", "192.168.1.20", "172.16.0.1",
    "169.254.169.254", "[fe80::1]", "[fd00::1]", "224.0.0.1", "0.0.0.0", "240.0.0.1",
    "localhost", "vm", "metadata.internal",
]  # fmt: skip


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_bad_forward_to_is_refused_at_minting_in_words(host: str) -> None:

    library = TemplateLibrary(ROOT / "templates")
    with pytest.raises(MintError) as refused:
        mint(HookSigner([SECRET_KEY]), library, "passkit-events",
             {"forward_to": f"https://{host}:8443/catch"}, "https://relay.example.com")  # fmt: skip
    said = str(refused.value)
    assert "forward_to is refused" in said and "public addresses" in said, said


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.zapier.com/hooks/catch/1/a/", "must start with https://"),
        ("https://me:secret@hooks.zapier.com/hooks/catch/1/a/", "user name or password"),
    ],
)
def test_plain_http_and_credentials_are_refused(url: str, words: str) -> None:

    problem = UrlGuard().problem(url)
    assert problem is not None and words in problem
    assert "secret" not in problem  # never the URL's credentials
    assert UrlGuard().problem("https://hooks.zapier.com/hooks/catch/1/a/") is None


def test_allow_urls_match_host_and_port_not_a_string_prefix() -> None:

    guard = UrlGuard(allow=("http://10.0.0.5:8080/hooks/",))
    assert guard.problem("http://10.0.0.5:8080/hooks/catch") is None
    for other in ("http://10.0.0.5:8080.evil.net/hooks/x", "http://10.0.0.5:8081/hooks/x",
                  "http://10.0.0.5:8080/admin", "http://x@10.0.0.5:8080/hooks/x"):  # fmt: skip
        assert guard.problem(other) is not None, other
    assert UrlGuard(allow=("http://127.0.0.1",)).problem("http://127.0.0.1.nip.io/") is not None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """Anything on loopback the relay must never reach: its base URL and what it received."""
    got: list[bytes] = []

    async def catch(request: Request) -> Response:
        got.append(await request.body())
        return JSONResponse({"status": "success"})

    app = Starlette(routes=[Route("/{path:path}", catch, methods=["GET", "POST"])])
    with serve_in_thread(app) as url:
        yield url, got


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["localhost", "vm"])  # /etc/hosts: both lead to 127.0.0.1
async def test_a_name_leading_to_loopback_is_refused_where_it_connects(
    name: str, receiver: tuple[str, list[bytes]]
) -> None:
    """The connection's own check: the name is looked up when connecting and the address is
    judged there (the URL's text alone would pass this transport), so a name pointed at
    loopback after any earlier look (DNS rebinding) is refused all the same."""

    port = int(receiver[0].rsplit(":", 1)[1])
    async with httpx.AsyncClient(transport=checked_transport()) as client:
        with pytest.raises(UrlRefused) as refused:
            await client.post(f"http://{name}:{port}/catch", json={"x": 1})
    assert "loopback" in str(refused.value) and name in str(refused.value)
    assert receiver[1] == []


WEBHOOK_SECRET = "pk-webhook-signing-secret-0123456789"
EVENT = json.dumps({"event": "PASS_EVENT_INSTALLED", "pass": {"id": "p1", "personDetails":
                    {"emailAddress": "mara@example.com"}}}).encode()  # fmt: skip


def _events_path(forward_to: str, hook_id: str) -> str:

    hook = Hook(id=hook_id, template="passkit-events", params={"forward_to": forward_to})
    return "/passkit/" + HookSigner([SECRET_KEY]).mint(hook)


def _signed(body: bytes, nonce: str | None = None) -> dict[str, str]:
    return {"content-type": "application/json",
            "x-passkit-signature": sign(body, WEBHOOK_SECRET, nonce=nonce)}  # fmt: skip


@pytest.mark.anyio
async def test_forward_to_loopback_private_or_link_local_sends_nothing(
    receiver: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    """PassKit events URLs minted before the guard, pointing at the receiver on loopback (every
    spelling), a private address, link-local, a local name: the relay starts and names the
    registered one, each event fails at once saying why, and the receiver gets nothing."""

    port = int(receiver[0].rsplit(":", 1)[1])
    targets = [f"https://{host}:{port}/catch" for host in REFUSED_HOSTS]
    targets += [f"{receiver[0]}/catch", "https://u:p@hooks.zapier.com/x"]
    database = f"sqlite:///{tmp_path / 'relay.db'}"
    store = await open_store(database)
    await store.add_hook(HookRecord("hk_ssrf000000", "passkit-events",
                                    {"forward_to": targets[0]}, label="Old zap"))  # fmt: skip
    await store.close()
    env = {"DATABASE_URL": database, "PASSKIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "RELAY_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    relay = relay_process(env, tmp_path / "relay.log").start()
    try:
        async with httpx.AsyncClient(base_url=relay.url, timeout=30) as client:
            for n, target in enumerate(targets):
                body = EVENT.replace(b'"p1"', f'"p{n}"'.encode())
                answer = await client.put(_events_path(target, f"hk_ssrf{n:07d}"),
                                          content=body, headers=_signed(body))  # fmt: skip
                assert answer.status_code == 200, answer.text
            await _until_failed(database, len(targets))
        await asyncio.sleep(0.5)
        assert receiver[1] == []
        said = (tmp_path / "relay.log").read_text()
        assert "hook hk_ssrf000000 (Old zap): nothing is sent to its forward_to" in said, said
        assert "/catch" not in said.split("nothing is sent", 1)[1].split("\n", 1)[0]
        csrf = _csrf(relay.url)
        with httpx.Client(base_url=relay.url, timeout=10) as browser:
            browser.post("/admin/login", data={"csrf": csrf, "password": PASSWORD})
            page = browser.get("/admin/events").text
        assert "public addresses" in page and "not forwarded" in page
    finally:
        relay.stop()


async def _until_failed(database: str, count: int) -> None:

    store = await open_store(database, sealer=sealer_for(make_settings()))
    try:
        for _ in range(200):
            events = await store.list_events(limit=100)
            if len(events) == count and all(e.state == "failed" for e in events):
                errors = [e.last_error or "" for e in events]
                assert all(e.startswith("Not sent") for e in errors), errors
                return
            await asyncio.sleep(0.1)
        raise AssertionError([(e.state, e.last_error) for e in events])
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "10.0.0.5",
                                  "169.254.169.254", "localhost"])  # fmt: skip
async def test_an_alert_url_at_loopback_or_private_sends_nothing(
    host: str, receiver: tuple[str, list[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """RELAY_ALERT_URL refused: the relay starts, says alerts are off and why (never the URL),
    a failing hook alerts nobody; `relay check` names it."""

    port = int(receiver[0].rsplit(":", 1)[1])
    for scheme in ("https", "http"):
        alert_url = f"{scheme}://{host}:{port}/hook-secret-path"
        settings = make_settings(RELAY_ALERT_URL=alert_url, RELAY_RETRY_BUDGET="0.1")
        passkit = respx.MockRouter(base_url=API, assert_all_called=False)
        passkit.route().mock(return_value=httpx.Response(503))  # every delivery fails
        app = create_app(settings, transport=httpx.MockTransport(passkit.async_handler))
        with caplog.at_level(logging.WARNING), serve_in_thread(app, lifespan="on") as url:
            enrol = mint_url("member-enrol", "hk_alerts0001", program_id="p1", tier_id="base")
            for _ in range(3):
                answer = httpx.post(url + enrol, json={"external_id": "A", "email": "a@b.co"})
                assert answer.status_code >= 500
            await asyncio.sleep(0.5)
        assert receiver[1] == []
        said = [r.getMessage() for r in caplog.records if "RELAY_ALERT_URL" in r.getMessage()]
        assert said and "alerts: off" in said[0], said
        assert all("hook-secret-path" not in line for line in said)
        caplog.clear()
    check = subprocess.run([sys.executable, "-m", "relay", "check"], capture_output=True,
                           text=True, env={**os.environ, **BASE_ENV, "RELAY_ALERT_URL": alert_url},
                           cwd=tmp_path, timeout=60)  # fmt: skip
    assert check.returncode == 1
    assert "RELAY_ALERT_URL is refused, no alert is sent" in check.stdout, check.stdout
    assert "hook-secret-path" not in check.stdout


def test_relay_check_names_a_registered_forward_to_it_will_not_send_to(tmp_path: Path) -> None:

    database = f"sqlite:///{tmp_path / 'relay.db'}"

    async def register() -> None:
        store = await open_store(database)
        metadata = {"forward_to": "https://169.254.169.254/latest"}
        await store.add_hook(HookRecord("hk_ssrf000001", "passkit-events", metadata))
        await store.close()

    asyncio.run(register())
    check = subprocess.run([sys.executable, "-m", "relay", "check"], capture_output=True,
                           text=True, env={**os.environ, **BASE_ENV, "DATABASE_URL": database},
                           cwd=tmp_path, timeout=60)  # fmt: skip
    assert check.returncode == 1
    assert "hook hk_ssrf000001" in check.stdout and "169.254.169.254" in check.stdout
    assert "nothing is sent there" in check.stdout


# -- PassKit events cannot be replayed ------------------------------------------------------------


@pytest.fixture
def catcher() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A Zapier catch hook stand-in on loopback: its URL and the events it received."""
    got: list[dict[str, object]] = []

    async def catch(request: Request) -> Response:
        got.append(await request.json())
        return JSONResponse({"status": "success"})

    with serve_in_thread(Starlette(routes=[Route("/catch", catch, methods=["POST"])])) as url:
        yield f"{url}/catch", got


EVENTS_ENV = {
    "RELAY_FORWARD_RETRY": "0.2",
    "PASSKIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "RELAY_ALLOW_URLS": "http://127.0.0.1",
}  # the catcher is on loopback


def _json(signature: str) -> dict[str, str]:
    return {"content-type": "application/json", "x-passkit-signature": signature}


def _shifted(header: str) -> str:
    """The separator of the signed text moved into the nonce: `t=<nonce>.,v1=<same>`."""
    nonce, signature = header.split(",")
    return f"{nonce}.,{signature}"


@pytest.mark.anyio
async def test_a_stale_event_with_its_separator_moved_into_the_nonce_is_refused(
    catcher: tuple[str, list[dict[str, object]]], tmp_path: Path
) -> None:
    env = {**EVENTS_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    path = _events_path(catcher[0], "hk_replay00001")
    old = _signed(EVENT, nonce=str(int(time.time()) - 3600))["x-passkit-signature"]
    relay = relay_process(env, tmp_path / "relay.log").start()
    try:
        async with httpx.AsyncClient(base_url=relay.url, timeout=10) as client:
            for header in (old, _shifted(old)):
                answer = await client.put(path, content=EVENT, headers=_json(header))
                assert answer.status_code == 401, (header, answer.text)
                assert "minutes from this server's time" in answer.text
        await asyncio.sleep(0.8)
        assert catcher[1] == []
    finally:
        relay.stop()


@pytest.mark.anyio
async def test_a_signature_seen_before_is_a_replay_in_every_process(
    database_url: str, catcher: tuple[str, list[dict[str, object]]], tmp_path: Path
) -> None:
    """A fresh event forwarded once; the same request again, and its shifted-nonce twin, sent
    to another process on the same database: 200, not forwarded again. An undated nonce too."""
    env = {**EVENTS_ENV, "DATABASE_URL": database_url}
    path = _events_path(catcher[0], "hk_replay00002")
    first = relay_process(env, tmp_path / "one.log").start()
    second = relay_process(env, tmp_path / "two.log").start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for nonce in (None, "a1b2c3d4e5f60718293a4b5c6d7e8f90"):  # dated, and not
                body = EVENT.replace(b'"p1"', f'"{nonce}"'.encode())
                header = _signed(body, nonce=nonce)["x-passkit-signature"]
                answers = []
                shifted = _shifted(header)
                sends = [(first, header), (second, header), (second, shifted), (first, shifted)]
                for relay, sent in sends:
                    answer = await client.put(relay.url + path, content=body, headers=_json(sent))
                    assert answer.status_code == 200, answer.text
                    answers.append(answer.json())
                assert "duplicate" not in answers[0]
                assert all(a["duplicate"] is True for a in answers[1:]), answers
                assert {a["event_id"] for a in answers} == {answers[0]["event_id"]}
        for _ in range(100):
            if len(catcher[1]) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a second forward would have arrived by now
        assert len(catcher[1]) == 2, catcher[1]
        assert len({e["event_id"] for e in catcher[1]}) == 2
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(
    ("nonce", "dated"),
    [("1700000000", True), ("1700000000.", True), ("1700000000000", True),
     ('1700000000.{"event"', True), (" 1700000000 .", True), ("17000-00000", True),
     ("1234567890abcdef", False), ("3f2c9a1e-8b7d-4c6e-9f01-23456789abcd", False),
     ("a1b2c3", False), ("123", False)],
)  # fmt: skip
def test_a_nonce_carries_a_time_once_separators_are_stripped(nonce: str, dated: bool) -> None:
    assert (nonce_time(nonce) is not None) is dated


# -- the smaller items ---------------------------------------------------------------------------


def test_a_stripe_signature_dated_ten_years_ahead_is_refused() -> None:
    from relay.stripe.events import InvalidSignature, sign, verify

    secret = "whsec_test_" + "a" * 24
    body = json.dumps({"id": "evt_1", "type": "invoice.paid",
                       "data": {"object": {"id": "in_1"}}}).encode()  # fmt: skip
    assert verify(body, sign(body, secret), [secret])["id"] == "evt_1"
    assert verify(body, sign(body, secret, int(time.time()) + 200), [secret])  # clocks drift
    for ahead in (10 * 365 * 86_400, 3600):
        with pytest.raises(InvalidSignature) as refused:
            verify(body, sign(body, secret, int(time.time()) + ahead), [secret])
        assert "ahead of this server's time" in refused.value.message
    with pytest.raises(InvalidSignature) as stale:
        verify(body, sign(body, secret, int(time.time()) - 3600), [secret])
    assert "more than 5 minutes old" in stale.value.message


def test_a_stripe_event_dated_ahead_is_refused_by_a_real_relay(tmp_path: Path) -> None:
    from relay.stripe.events import sign as stripe_sign

    secret = "whsec_test_" + "b" * 24
    env = {"STRIPE_WEBHOOK_SECRET": secret}
    relay = relay_process(env, tmp_path / "relay.log").start()
    try:
        path = mint_url("stripe", "hk_stripe00001", program_id="p1", tier_id="base")
        path = path.replace("/hooks/", "/stripe/")
        body = json.dumps({"id": "evt_future", "type": "invoice.paid", "object": "event",
                           "data": {"object": {"id": "in_1"}}}).encode()  # fmt: skip
        header = stripe_sign(body, secret, int(time.time()) + 10 * 365 * 86_400)
        answer = httpx.post(relay.url + path, content=body, timeout=10,
                            headers={"stripe-signature": header,
                                     "content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_signature"
        assert "ahead of this server's time" in answer.json()["error"]["message"]
    finally:
        relay.stop()


@pytest.mark.anyio
async def test_a_bad_passkit_signature_alerts_in_passkit_words_not_stripes(
    tmp_path: Path,
) -> None:
    texts: list[str] = []

    async def inbox(request: Request) -> Response:
        texts.append((await request.json())["text"])
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/hook", inbox, methods=["POST"])])) as alerts:
        settings = make_settings(
            RELAY_ALERT_URL=f"{alerts}/hook", RELAY_ALLOW_URLS=alerts,
            PASSKIT_WEBHOOK_SECRET=WEBHOOK_SECRET, DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}",
        )  # fmt: skip
        app = create_app(settings, transport=httpx.MockTransport(lambda r: httpx.Response(503)))
        with serve_in_thread(app, lifespan="on") as url:
            path = _events_path("https://hooks.zapier.com/hooks/catch/1/a/", "hk_pkalert0001")
            bad = sign(EVENT, "not-the-secret")
            answer = httpx.put(url + path, content=EVENT, headers=_json(bad), timeout=10)
            assert answer.status_code == 401
            for _ in range(100):
                if texts:
                    break
                await asyncio.sleep(0.05)
    assert len(texts) == 1, texts
    assert "PassKit's signature" in texts[0] and "PASSKIT_WEBHOOK_SECRET" in texts[0]
    assert "Stripe" not in texts[0] and "whsec_" not in texts[0]


@pytest.mark.anyio
async def test_a_hook_minted_by_another_database_is_registered_with_its_settings(
    tmp_path: Path,
) -> None:
    """Used on a database that did not mint it: registered with the settings its token
    carries, so its console page shows a URL that works (the same settings signed again)."""
    database = f"sqlite:///{tmp_path / 'relay.db'}"
    env = {"RELAY_ADMIN_PASSWORD": PASSWORD, "DATABASE_URL": database}
    relay = relay_process(env, tmp_path / "relay.log").start()
    params = {"program_id": "prog_gym", "tier_id": "gold"}
    try:
        path = mint_url("member-enrol", "hk_elsewhere01", **params)
        answer = httpx.post(relay.url + path + "?dry_run=1", json={"external_id": "A-1"},
                            timeout=10)  # fmt: skip
        assert answer.status_code < 500, answer.text
        with httpx.Client(base_url=relay.url, timeout=10) as browser:
            browser.post("/admin/login", data={"csrf": _csrf(relay.url), "password": PASSWORD})
            page = browser.get("/admin/hooks/hk_elsewhere01").text
        shown = re.search(r"(/hooks/[A-Za-z0-9._-]+)", page)
        assert shown, page[:500]
        assert HookSigner([SECRET_KEY]).verify(shown.group(1)[7:]).params == params
    finally:
        relay.stop()
    store = await open_store(database)
    try:
        hook = await store.get_hook("hk_elsewhere01")
    finally:
        await store.close()
    assert hook is not None and dict(hook.params) == params


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_busy_port_is_said_at_once_and_nothing_starts(command: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        ran = subprocess.run(
            [sys.executable, "-m", "relay", command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env={**os.environ, **BASE_ENV}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        took = time.monotonic() - began
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert ran.stderr.strip() == f"port {port} is in use: relay {command} --port {port + 10}"
    assert "http://" not in ran.stdout  # no banner, no URL that cannot work
    assert took < 15


def test_console_forms_are_read_after_the_session_check_and_bounded(tmp_path: Path) -> None:
    """Without a session a console POST is refused before its body is read (a 50 MB one
    answered at once, memory unmoved); signed in, a form over 512 KiB is refused with 413."""
    env = {"RELAY_ADMIN_PASSWORD": PASSWORD}
    server = relay_process(env, tmp_path / "relay.log").start()
    try:
        assert server.process is not None
        before = _peak_rss_mb(server.process.pid)
        head = (
            "POST /admin/templates/member-enrol HTTP/1.1\r\nHost: relay\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        ).encode()
        said = _post_raw(server.port, head, 50 * 1024 * 1024, b"a=" + b"x" * 65534)
        assert said.startswith(b"HTTP/1.1 403"), said[:200]
        assert _peak_rss_mb(server.process.pid) - before < 30
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            form = {"csrf": _csrf(server.url), "password": PASSWORD}
            signed_in = browser.post("/admin/login", data=form)
            assert signed_in.status_code == 303
            page = browser.get("/admin/templates/member-enrol").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            too_much = {"csrf": csrf.group(1), "field:notes": "x" * 600_000}
            big = browser.post("/admin/templates/member-enrol", data=too_much)
            assert big.status_code == 413 and "The form was not sent" in big.text
            fine = browser.post("/admin/templates/member-enrol",
                                data={"csrf": csrf.group(1), "field:email": "a@b.co"})  # fmt: skip
            assert fine.status_code == 200
    finally:
        server.stop()

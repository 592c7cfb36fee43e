"""What a hostile sender can do (issue 10), on real servers on loopback: stall a request's
headers or body, pile up stalled connections, flood the server with headers, spoof
X-Forwarded-For past the login limiter; and `relay demo` cleaning up after itself whatever
signal stops it."""

from __future__ import annotations

import json
import re
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from relay.settings import ConfigError, load_settings
from relay.web.proxies import trusted_client, trusted_scheme
from relay.web.serving import BodyDeadline, server_options, uvicorn_options

from .conftest import BASE_ENV, make_settings, mint
from .processes import ServerProcess
from .servers import relay_process, serve_in_thread

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 1.0
MARGIN = 3.0  # a 2-core CI machine under load: closed within timeout + MARGIN
EARLY = 0.25  # and not before the timeout (less a little for timer granularity)
ENROL = mint("member-enrol", program_id="p1", tier_id="base")
PASSWORD = "correct horse battery staple"
HEADER_LIMIT = 16 * 1024  # RELAY_HEADER_LIMIT's default
PAD_LINE = b"X-Pad: " + b"a" * 1017 + b"\r\n"  # one 1 KiB header line


# -- raw connections ---------------------------------------------------------------------------


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    sock.setblocking(False)
    return sock


def is_open(sock: socket.socket) -> bool:
    """True if the server has not closed the connection (yet)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def wait_closed(
    socks: list[socket.socket], since: float, limit: float
) -> tuple[dict[socket.socket, float], dict[socket.socket, bytes]]:
    """Reads every socket until the server closes it or `limit` seconds after `since` pass;
    returns when each was closed (seconds after `since`) and what was received on it."""
    closed: dict[socket.socket, float] = {}
    received = {sock: b"" for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks) and time.monotonic() < since + limit:
            for key, _ in selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    received[sock] += data
                else:
                    closed[sock] = time.monotonic() - since
                    selector.unregister(sock)
    return closed, received


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def half_body_request(path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        "external_id=CRM-1&em"
    ).encode()


def head_of(size: int, method: str = "GET", path: str = "/healthz", extra: str = "") -> bytes:
    """A request head of exactly `size` bytes, request line to blank line included."""
    start = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}X-Pad: ".encode()
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def exchange(port: int, data: bytes, pieces: int = 1) -> tuple[bytes, float]:
    """Sends `data` (in `pieces` writes, as far as the server takes it), then reads until the
    server closes; returns what it answered and how long after the first byte it closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    began = time.monotonic()
    try:
        size = -(-len(data) // pieces)
        try:
            for at in range(0, len(data), size):
                sock.sendall(data[at : at + size])
                if pieces > 1:
                    time.sleep(0.002)  # a read each
        except OSError:  # the server closed before taking it all (what it answered stays)
            pass
        sock.setblocking(False)
        closed, received = wait_closed([sock], began, MARGIN)
        assert sock in closed, "not closed"
        return received[sock], closed[sock]
    finally:
        sock.close()


def statuses(raw: bytes) -> list[int]:
    return [int(line.split()[0]) for line in raw.split(b"HTTP/1.1 ")[1:]]


def assert_431(raw: bytes) -> None:
    status, headers, body = parse_answer(raw)
    assert status == 431 and raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    assert body["ok"] is False and body["error"]["code"] == "headers_too_large"
    assert str(HEADER_LIMIT) in body["error"]["message"] and body["error"]["hint"]
    assert body["request_id"] == headers["x-request-id"]


# -- a real `relay serve` with short timeouts --------------------------------------------------


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("serving")
    env = {
        "RELAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "RELAY_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "RELAY_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE),
        "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
    }
    process = relay_process(env, folder / "relay.log").start()
    try:
        yield process
    finally:
        process.stop()


def test_a_stalled_request_head_is_disconnected(relay: ServerProcess) -> None:
    stalls = {
        "nothing at all": b"",
        "half a request line": b"POST /hooks/x HT",
        "half the headers": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAcce",
    }
    began = time.monotonic()
    socks = {what: connect(relay.port, sent) for what, sent in stalls.items()}
    try:
        closed, received = wait_closed(list(socks.values()), began, HEADER_TIMEOUT + MARGIN)
        for what, sock in socks.items():
            assert sock in closed, f"{what}: still open after {HEADER_TIMEOUT + MARGIN} s"
            assert HEADER_TIMEOUT - EARLY <= closed[sock] <= HEADER_TIMEOUT + MARGIN, what
            assert received[sock] == b"", what  # dropped, not answered
    finally:
        for sock in socks.values():
            sock.close()


def test_a_stalled_body_is_answered_408_and_closed(relay: ServerProcess) -> None:
    began = time.monotonic()
    sock = connect(relay.port, half_body_request(ENROL))
    try:
        closed, received = wait_closed([sock], began, BODY_TIMEOUT + MARGIN)
        assert sock in closed
        assert BODY_TIMEOUT - EARLY <= closed[sock] <= BODY_TIMEOUT + MARGIN
        status, headers, body = parse_answer(received[sock])
        assert status == 408 and headers["connection"] == "close"
        assert body["ok"] is False and body["error"]["code"] == "body_timeout"
        assert body["error"]["hint"] and body["request_id"] == headers["x-request-id"]
    finally:
        sock.close()


def test_a_slow_body_inside_the_limit_is_read(relay: ServerProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    with sock:
        fields = b"external_id=CRM-1&email=ana%40example.com&dry_run=1"
        sock.sendall(
            f"POST {ENROL} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(fields)}\r\n\r\n".encode()
            + fields[:10]
        )
        time.sleep(BODY_TIMEOUT / 4)
        sock.sendall(fields[10:])
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, _, body = parse_answer(raw)
    assert status == 200 and body["ok"] is True and body["dry_run"] is True


def test_idle_and_trickling_keep_alive_connections_are_closed(relay: ServerProcess) -> None:
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    idle, trickling = connect(relay.port, get), connect(relay.port, get)
    try:
        for sock in (idle, trickling):  # each has its answer: a kept-alive connection now
            sock.settimeout(5)
            answer = b""
            while not answer.endswith(b'{"ok":true}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in answer
            sock.setblocking(False)
        began = time.monotonic()
        trickling.sendall(b"GET /hea")  # a next request begun, never finished
        closed, received = wait_closed([idle, trickling], began, HEADER_TIMEOUT + MARGIN)
        assert set(closed) == {idle, trickling}
        assert closed[idle] <= KEEP_ALIVE + MARGIN
        # The header deadline runs from the first byte of the next request, past keep-alive.
        assert HEADER_TIMEOUT - EARLY <= closed[trickling] <= HEADER_TIMEOUT + MARGIN
        assert received == {idle: b"", trickling: b""}
    finally:
        idle.close()
        trickling.close()


def test_hundreds_of_stalled_connections_leave_room_and_are_all_dropped(
    relay: ServerProcess,
) -> None:
    stalls = (b"", b"GET /hea", b"POST /hooks/x HTTP/1.1\r\nHost: a\r\nContent-Le")
    began = time.monotonic()
    heads = [connect(relay.port, stalls[n % 3]) for n in range(300)]
    bodies = [connect(relay.port, half_body_request(ENROL)) for _ in range(60)]
    opened = time.monotonic() - began
    try:
        answer = httpx.get(relay.url + "/healthz", timeout=10)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        held = sum(is_open(sock) for sock in heads + bodies)
        assert held == len(heads) + len(bodies), "dropped before the timeout"
        limit = max(HEADER_TIMEOUT, BODY_TIMEOUT) + MARGIN
        closed, received = wait_closed(heads + bodies, began, limit)
        assert len(closed) == len(heads) + len(bodies), f"{len(closed)} closed in {limit} s"
        assert min(closed.values()) >= HEADER_TIMEOUT - EARLY
        assert max(closed.values()) <= limit
        assert all(received[sock] == b"" for sock in heads)
        assert all(parse_answer(received[sock])[0] == 408 for sock in bodies)
        print(f"\n{held} stalled connections held (opened in {opened:.2f} s), /healthz answered; "
              f"all dropped between {min(closed.values()):.2f} s and "
              f"{max(closed.values()):.2f} s after the first was opened")  # fmt: skip
    finally:
        for sock in heads + bodies:
            sock.close()


def test_workers_get_the_header_deadline_too(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "relay", "serve", "--host", "127.0.0.1", "--port", "{port}",
            "--workers", "2"]  # fmt: skip
    env = {**BASE_ENV, "RELAY_PUBLIC_URL": "{url}", "RELAY_HEADER_TIMEOUT": "1"}
    process = ServerProcess(argv, env, "/readyz", log=tmp_path / "relay.log").start(timeout=60)
    try:
        began = time.monotonic()
        socks = [connect(process.port, b"GET /hea") for _ in range(4)]  # to both workers
        closed, _ = wait_closed(socks, began, 1 + MARGIN)
        assert len(closed) == len(socks), process.output()
        for sock in socks:
            sock.close()
    finally:
        process.stop()


def test_100_kb_of_headers_are_answered_431_and_closed(relay: ServerProcess) -> None:
    raw, seconds = exchange(relay.port, head_of(100 * 1024))
    assert_431(raw)
    assert seconds < MARGIN
    print(f"\n100 KB of headers refused (431, closed) {seconds * 1000:.1f} ms after the first byte")


def test_a_header_flood_leaves_the_servers_memory_alone(relay: ServerProcess) -> None:
    """50 MB of headers, as fast as loopback takes them, from 10 senders at once, 5 MB each.
    Without a limit the server buffered all of it until the header timeout (RSS +60 MB here;
    +190 MB for 200 MB); now each connection ends after 16 KiB, and a sender needs several."""
    chunk = PAD_LINE * 64  # 64 KiB
    total, per_connection, senders = 50 * 1024 * 1024, 5 * 1024 * 1024, 10
    sent = [0] * senders
    answers: list[bytes] = []

    def flood(n: int) -> None:
        for _ in range(200):  # connections; each one takes at least a few hundred KB
            if sent[n] >= total // senders:
                return
            sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
            with sock:
                try:
                    sock.sendall(b"POST /hooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    for _ in range(per_connection // len(chunk)):
                        sent[n] += sock.send(chunk)
                except OSError:  # refused: the server closed (or reset) the connection
                    pass
                try:
                    answers.append(sock.recv(65536))
                except OSError:
                    answers.append(b"")

    before = peak = relay.rss_mb()
    threads = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(senders)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) and time.monotonic() < began + 60:
        peak = max(peak, relay.rss_mb())
        time.sleep(0.01)
    took = time.monotonic() - began
    for thread in threads:
        thread.join(5)
    after = relay.rss_mb()
    assert sum(sent) >= total, f"only {sum(sent) / 2**20:.0f} MB sent in {took:.0f} s"
    assert after <= before + 20 and peak <= before + 20, (before, peak, after)
    assert all(a == b"" or a.startswith(b"HTTP/1.1 431 ") for a in answers), answers
    assert any(a.startswith(b"HTTP/1.1 431 ") for a in answers)
    assert httpx.get(relay.url + "/healthz", timeout=10).status_code == 200
    print(f"\n{sum(sent) / 2**20:.0f} MB of headers over {len(answers)} connections in "
          f"{took:.2f} s: RSS {before:.1f} MB before, {peak:.1f} MB at most, {after:.1f} MB "
          "after")  # fmt: skip


def test_requests_with_8_kb_of_headers_still_work(relay: ServerProcess) -> None:
    """What Zapier, Make or Stripe send through Heroku's router is 1-2 KB; 8 KB is four times
    that, and still a delivery like any other."""
    headers = {f"X-Custom-{n}": "v" * 1000 for n in range(8)}
    fields = {"external_id": "CRM-1", "email": "ana@example.com", "dry_run": "1"}
    answer = httpx.post(relay.url + ENROL, data=fields, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["dry_run"] is True
    assert sum(len(k) + len(v) + 4 for k, v in answer.request.headers.raw) > 8 * 1024


def test_relay_sandbox_is_served_with_the_same_limits(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "relay", "sandbox", "--port", "{port}"]
    sandbox = ServerProcess(argv, {}, "/", log=tmp_path / "sandbox.log").start()
    try:
        assert_431(exchange(sandbox.port, head_of(100 * 1024))[0])
        raw, _ = exchange(sandbox.port, head_of(8 * 1024, path="/", extra="Connection: close\r\n"))
        assert statuses(raw) == [200]
    finally:
        sandbox.stop()


# -- the same protocol classes in this process, h11 and httptools ------------------------------


@pytest.fixture(params=["httptools", "h11"])
def in_thread(request: pytest.FixtureRequest) -> Iterator[int]:
    """`create_app` under uvicorn with `uvicorn_options` for the protocol; yields its port."""
    from relay.app import create_app

    settings = make_settings(RELAY_HEADER_TIMEOUT="1", RELAY_KEEP_ALIVE_TIMEOUT="1")
    options = uvicorn_options(settings, http=request.param)
    with serve_in_thread(create_app(settings), **options) as url:
        yield int(url.rsplit(":", 1)[1])


def test_both_protocols_answer_pipelined_requests_then_drop_a_stall(in_thread: int) -> None:
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    began = time.monotonic()
    sock = connect(in_thread, get * 3 + b"GET /healthz HTTP/1.1\r\nHo")
    try:
        closed, received = wait_closed([sock], began, 1 + MARGIN)
        assert sock in closed and 1 - EARLY <= closed[sock] <= 1 + MARGIN
        assert received[sock].count(b"HTTP/1.1 200 OK") == 3
    finally:
        sock.close()


def test_both_protocols_hold_heads_to_the_limit_to_the_byte(in_thread: int) -> None:
    for pieces in (1, 20):  # at once, and a read at a time
        raw, _ = exchange(in_thread, head_of(HEADER_LIMIT + 1), pieces)
        assert_431(raw)
        raw, _ = exchange(in_thread, head_of(HEADER_LIMIT, extra="Connection: close\r\n"), pieces)
        assert statuses(raw) == [200], raw[:200]
    assert_431(exchange(in_thread, head_of(100 * 1024))[0])
    unterminated = head_of(HEADER_LIMIT)[:-4] + PAD_LINE * 100
    assert_431(exchange(in_thread, unterminated, pieces=100)[0])


def test_both_protocols_count_only_the_head(in_thread: int) -> None:
    # A head just within the limit and a 300 KB body in one write: not refused (405: /healthz
    # takes no POST).
    head = head_of(HEADER_LIMIT - 100, "POST", extra="Content-Length: 300000\r\n")
    raw, _ = exchange(in_thread, head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                      + b"x" * 300_000)  # fmt: skip
    assert statuses(raw) == [405]
    # Pipelined: three heads of 10 KB each in one write, more than the limit together.
    three = head_of(10_000) * 2 + head_of(10_000, extra="Connection: close\r\n")
    assert statuses(exchange(in_thread, three)[0]) == [200, 200, 200]
    # Kept alive: one 15 KB head after another on the same connection, each within the limit.
    sock = socket.create_connection(("127.0.0.1", in_thread), timeout=5)
    with sock:
        for _ in range(4):
            sock.sendall(head_of(15_000))
            answer = b""
            while not answer.endswith(b'{"ok":true}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")


def test_both_protocols_answer_pipelined_requests_before_refusing_a_head(in_thread: int) -> None:
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    unterminated = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + PAD_LINE * 50
    raw, _ = exchange(in_thread, get + unterminated)
    assert statuses(raw) == [200, 431]
    assert_431(raw[raw.index(b"HTTP/1.1 431") :])


# -- the body deadline without a Starlette app around it (the demo's sandbox) ------------------


@pytest.mark.anyio
async def test_body_deadline_answers_408_itself() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the body never ends")

    messages = iter([{"type": "http.request", "body": b"a", "more_body": True}])

    async def receive() -> Message:
        message = next(messages, None)
        if message is None:
            await anyio.sleep_forever()  # the client stalls
        assert message is not None
        return message

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [],
             "state": {"request_id": "req_1"}}  # fmt: skip
    await BodyDeadline(app, seconds=0.2)(scope, receive, send)
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["request_id"] == "req_1" and body["error"]["code"] == "body_timeout"


# -- the client address from the trusted hop ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "hops", "expected"),
    [
        (["203.0.113.7"], 0, None),  # nothing trusted: the socket's peer stands
        (["1.1.1.1, 203.0.113.7"], 0, None),
        (["203.0.113.7"], 1, "203.0.113.7"),
        (["6.6.6.6, 203.0.113.7"], 1, "203.0.113.7"),  # never the leftmost, the client's own
        (["6.6.6.6, 203.0.113.7, 10.1.2.3"], 2, "203.0.113.7"),
        (["203.0.113.7, 10.1.2.3"], 2, "203.0.113.7"),  # the leftmost when it is that entry
        (["6.6.6.6", "203.0.113.7"], 1, "203.0.113.7"),  # several headers are one list
        (["6.6.6.6, 203.0.113.7", "10.1.2.3"], 2, "203.0.113.7"),
        ([], 1, None),  # no header
        (["203.0.113.7"], 2, None),  # shorter than the proxies that should have appended
        (["6.6.6.6, unknown"], 1, None),  # not an address
        (["6.6.6.6, "], 1, None),
        (["6.6.6.6,, 203.0.113.7"], 1, "203.0.113.7"),
        (["203.0.113.7:4711"], 1, "203.0.113.7"),
        (["2001:db8::1"], 1, "2001:db8::1"),
        (["[2001:DB8::1]:4711"], 1, "2001:db8::1"),
    ],
)
def test_trusted_client(headers: list[str], hops: int, expected: str | None) -> None:
    assert trusted_client(headers, hops) == expected


def test_trusted_scheme() -> None:
    assert trusted_scheme(["https"], 1) == "https"
    assert trusted_scheme(["http, https"], 1) == "https"
    assert trusted_scheme(["HTTPS"], 1) == "https"
    assert trusted_scheme(["https"], 0) is None
    assert trusted_scheme([], 1) is None
    assert trusted_scheme(["gopher"], 1) is None


def test_proxy_settings_and_timeouts_have_sane_defaults() -> None:
    plain = load_settings(BASE_ENV)
    assert (plain.trusted_proxies, plain.keep_alive_timeout) == (0, 5.0)
    assert (plain.header_timeout, plain.body_timeout) == (10.0, 20.0)
    dyno = load_settings({**BASE_ENV, "DYNO": "web.1"})
    assert (dyno.trusted_proxies, dyno.keep_alive_timeout) == (1, 100.0)
    assert load_settings({**BASE_ENV, "DYNO": "web.1", "RELAY_TRUSTED_PROXIES": "0"}) \
        .trusted_proxies == 0  # fmt: skip
    assert load_settings({**BASE_ENV, "RELAY_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE_ENV, "RELAY_TRUSTED_PROXIES": "-1", "RELAY_HEADER_TIMEOUT": "0",
                       "RELAY_BODY_TIMEOUT": "soon"})  # fmt: skip
    text = "\n".join(err.value.problems)
    assert all(name in text for name in ("RELAY_TRUSTED_PROXIES", "RELAY_HEADER_TIMEOUT",
                                         "RELAY_BODY_TIMEOUT"))  # fmt: skip
    options = uvicorn_options(plain)
    assert options["proxy_headers"] is False and options["timeout_keep_alive"] == 5.0
    assert plain.header_limit == HEADER_LIMIT == options["h11_max_incomplete_event_size"]
    sandbox = server_options()  # `relay sandbox`: the same, with the defaults
    assert {k: v for k, v in sandbox.items() if k != "http"} == \
        {k: v for k, v in options.items() if k != "http"}  # fmt: skip
    assert load_settings({**BASE_ENV, "RELAY_HEADER_LIMIT": "32768"}).header_limit == 32768
    for wrong in ("512", "0", "lots", "inf", "nan", "2000000"):
        with pytest.raises(ConfigError) as err:
            load_settings({**BASE_ENV, "RELAY_HEADER_LIMIT": wrong})
        assert "RELAY_HEADER_LIMIT" in err.value.problems[0]


def login(base: str, forwarded_for: str, password: str = "guess") -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        form = client.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text[:200]
        return client.post("/admin/login", data={"csrf": csrf.group(1), "password": password})


def test_spoofed_forwarded_for_does_not_escape_the_login_limiter(tmp_path: Path) -> None:
    env = {"DYNO": "web.1", "RELAY_ADMIN_PASSWORD": PASSWORD,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}  # fmt: skip
    process = relay_process(env, tmp_path / "relay.log").start()
    try:
        router_saw = "203.0.113.7"  # Heroku's router appends the address it saw, rightmost
        statuses = [
            login(process.url, f"198.51.100.{n}, {router_saw}").status_code for n in range(7)
        ]
        assert statuses == [401] * 5 + [429] * 2
        right = login(process.url, f"198.51.100.99, {router_saw}", PASSWORD)
        assert right.status_code == 429  # even the right password waits now
        other = login(process.url, f"{router_saw}, 203.0.113.8")  # the leftmost is ignored
        assert other.status_code == 401
        assert login(process.url, "203.0.113.8", PASSWORD).status_code == 303
    finally:
        process.stop()


@pytest.mark.anyio
@pytest.mark.parametrize(("proxies", "secure"), [("1", True), ("0", False)])
async def test_the_admin_cookie_follows_the_trusted_scheme(
    make_client: Callable[..., httpx.AsyncClient], proxies: str, secure: bool
) -> None:
    settings = make_settings(RELAY_ADMIN_PASSWORD=PASSWORD, RELAY_TRUSTED_PROXIES=proxies)
    async with make_client(settings) as client:
        client.base_url = httpx.URL("http://relay.internal")  # the router speaks plain http
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        form = await client.get("/admin/login", headers=headers)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        answer = await client.post("/admin/login", headers=headers,
                                   data={"csrf": csrf.group(1), "password": PASSWORD})  # fmt: skip
        assert answer.status_code == 303
        assert ("secure" in answer.headers["set-cookie"].lower()) is secure


# -- `relay demo` cleans up however it is stopped ----------------------------------------------


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 0), (signal.SIGHUP, -signal.SIGTERM)],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_relay_demo_removes_its_folder_when_stopped(
    tmp_path: Path, signum: int, returncode: int
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = [sys.executable, "-m", "relay", "demo", "--port", "{port}"]
    env = {"TMPDIR": str(tmp), "RELAY_HEADER_TIMEOUT": "1"}
    demo = ServerProcess(argv, env, "/healthz", cwd=tmp_path, log=tmp_path / "demo.log").start()
    try:
        assert [p.name[:11] for p in tmp.iterdir()] == ["relay-demo-"]
        began = time.monotonic()
        sock = connect(demo.port, b"GET /sandbox/")  # the demo drops stalls too
        closed, _ = wait_closed([sock], began, 1 + MARGIN)
        sock.close()
        assert closed
        assert demo.process is not None
        demo.process.send_signal(signum)
        assert demo.process.wait(15) == returncode, demo.output()
        assert list(tmp.iterdir()) == [], demo.output()
        assert "Traceback" not in demo.output()
    finally:
        demo.kill()


def test_serve_hands_the_templates_it_checked_to_the_app_it_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`relay serve` compiles every template to refuse a broken one before it takes the port;
    the app it then serves in its own process takes that library instead of compiling it a
    second time (~80 ms of start-up), but never a library of another folder."""
    from relay.app import app_from_environ
    from relay.delivery.templating import TemplateLibrary

    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    checked = TemplateLibrary(Path(BASE_ENV["RELAY_TEMPLATES"]))
    assert app_from_environ(library=checked).state.services.library is checked
    (tmp_path / "member-enrol.json.j2").write_text(
        (checked.folder / "member-enrol.json.j2").read_text(encoding="utf-8"), encoding="utf-8"
    )
    elsewhere = TemplateLibrary(tmp_path)
    served = app_from_environ(library=elsewhere).state.services.library
    assert served is not elsewhere and served.folder == checked.folder
    assert served.names() == checked.names()


# -- each answer in one write ------------------------------------------------------------------


def test_an_answer_leaves_in_one_write_and_100_continue_at_once() -> None:
    """uvicorn writes an answer's head and body apart (two system calls); the relay's protocol
    holds the head for the body, so each answer is one write. What is written before the answer
    starts (`100 Continue`, which the client waits for before it sends the body) is not held,
    and a head with no body to follow (HEAD, an error) goes out when the answer ends."""
    from relay.web.serving import _HeadWithBody

    class Transport:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    transport = Transport()
    held = _HeadWithBody(transport)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert len(transport.writes) == 1, "the head waits for its body"
    held.write(b"{}")
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    held.flush()
    assert len(transport.writes) == 2 and not held.is_closing()

    transport = Transport()
    held = _HeadWithBody(transport)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")  # a HEAD request's: no body
    held.close()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]
    assert transport.closed


def test_head_100_continue_and_pipelined_requests_are_answered_whole(
    relay: ServerProcess,
) -> None:
    """The same on a real `relay serve`: a HEAD answer arrives and leaves the connection
    usable, a client that waits for `100 Continue` gets it before sending its body, and
    pipelined requests are each answered, in order."""
    port = int(relay.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < int(
            re.search(rb"content-length: (\d+)", raw, re.I)[1]  # type: ignore[index]
        ):
            raw += sock.recv(65536)
        assert parse_answer(raw)[0] == 200

        body = b"external_id=CRM-1&email=not-an-address"  # refused once read: no PassKit call
        sock.sendall(
            f"POST {ENROL} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body
        sock.sendall(body)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 422 "), answer
        assert parse_answer(answer)[2]["error"]["field"] == "email"  # the whole answer

    pipelined = (
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
        + (  # heads with no body
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3
        )
        + (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    )
    raw, _ = exchange(port, pipelined)
    assert statuses(raw) == [200] * 6

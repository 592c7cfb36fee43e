"""Issue 20, on real servers: the console's sign-in holds under concurrent guesses and huge
bodies; the URLs the relay calls on an operator's say-so are checked where it connects; PassKit
events cannot be replayed."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import httpx
import pytest

from .servers import relay_process

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

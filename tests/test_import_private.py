"""The console's Import page as a door: a stranger's upload is refused before its body is read
(measured on a real `relay serve`, from /proc), a signed-in operator's still goes through."""

from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path

import httpx

from .conftest import BASE_ENV
from .processes import ServerProcess
from .test_admin import PASSWORD, token_in
from .test_import import mint_hook

UPLOAD_MB = 19
UPLOADS = 20


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kb / 1024


def stranger_upload(port: int, answers: list[bytes]) -> None:
    """A 19 MB multipart upload with no session cookie, sent as fast as the server takes it."""
    boundary = "relaytestboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + UPLOAD_MB * 1024 * 1024 + len(tail)
    request = (
        f"POST /admin/import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    chunk = b"email\r\n" + b"a" * (256 * 1024 - 7)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(request + head)
            for _ in range(UPLOAD_MB * 4):
                sock.sendall(chunk)
            sock.sendall(tail)
        except OSError:
            pass  # refused and closed before the body was all sent: what we want
        try:
            answers.append(sock.recv(4096))
        except OSError:
            answers.append(b"")


def test_strangers_uploads_are_refused_before_their_body_is_read(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'relay.db'}"
    env = {**BASE_ENV, "DATABASE_URL": database, "RELAY_ADMIN_PASSWORD": PASSWORD}
    _, _ = mint_hook(env)
    argv = [sys.executable, "-m", "relay", "serve", "--host", "127.0.0.1", "--port", "{port}",
            "--workers", "1"]  # fmt: skip
    server = ServerProcess(argv, env, "/healthz", log=tmp_path / "relay.log").start(timeout=60)
    try:
        assert server.process is not None
        pid = server.process.pid
        httpx.get(f"{server.url}/admin/login")  # warm up the page code before measuring
        before = peak_rss_mb(pid)
        answers: list[bytes] = []
        threads = [threading.Thread(target=stranger_upload, args=(server.port, answers))
                   for _ in range(UPLOADS)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        after = peak_rss_mb(pid)
        print(f"peak RSS {before:.1f} MB before, {after:.1f} MB after {UPLOADS} stranger uploads "
              f"of {UPLOAD_MB} MB")  # fmt: skip
        assert len(answers) == UPLOADS
        assert all(a.startswith(b"HTTP/1.1 403") for a in answers), answers[:1]
        assert after - before < 30, (before, after)

        # A signed-in operator's upload still goes through (and one past the cap is refused).
        with httpx.Client(base_url=server.url) as client:
            form = client.get("/admin/login")
            client.post("/admin/login", data={"csrf": token_in(form.text), "password": PASSWORD})
            csrf = token_in(client.get("/admin/import").text)
            hook = re.search(r'<option value="(hk_[0-9a-f]+)"', client.get("/admin/import").text)
            assert hook is not None
            members = b"Email,External ID\na@example.com,1\n"
            sent = client.post("/admin/import", data={"csrf": csrf, "hook": hook.group(1)},
                               files={"file": ("m.csv", members)})  # fmt: skip
            assert sent.status_code == 303, sent.text
            assert re.fullmatch(r"/admin/import/\w+", sent.headers["location"])
            forged = client.post("/admin/import", data={"csrf": "forged", "hook": hook.group(1)},
                                 files={"file": ("m.csv", b"Email\na@example.com\n")})  # fmt: skip
            assert forged.status_code == 403
            big = client.post("/admin/import", data={"csrf": csrf, "hook": hook.group(1)},
                              files={"file": ("m.csv", b"x" * (21 * 1024 * 1024))})  # fmt: skip
            assert big.status_code == 413
    finally:
        server.stop()

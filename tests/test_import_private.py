"""The console's imports: the page as a door (a stranger's upload is refused before its body is
read, measured on a real `relay serve` from /proc; a signed-in operator's still goes through),
and an import's files as one relay's own (sealed in its database, never seen by another relay on
the machine, purged after a day, removed by `relay erase`)."""

from __future__ import annotations

import re
import socket
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from relay.sandbox import State
from relay.sealing import Sealer
from relay.store import open_store
from relay.store.imports import KEEP

from .conftest import BASE_ENV, SECRET_KEY
from .processes import ServerProcess
from .servers import relay_on_sandbox
from .test_admin import PASSWORD, token_in
from .test_import import environment, mint_hook, relay

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


# -- an import's files belong to one relay ---------------------------------------------------

SEALER = Sealer.from_secrets([SECRET_KEY])


@pytest.mark.anyio
async def test_imports_are_sealed_purged_a_day_on_and_erased_by_person(database_url: str) -> None:
    store = await open_store(database_url, sealer=SEALER)
    try:
        now = time.time()
        for job_id, who in (("a" * 16, "ana@example.com"), ("b" * 16, "bob@example.com")):
            await store.save_import({"id": job_id, "created": now, "name": "m.csv"}, now)
            await store.add_import_part(job_id, "upload", b"Email;Name\n")
            await store.add_import_part(job_id, "upload", f"{who};Someone\n".encode())
        parts = [part async for part in store.import_parts("a" * 16, "upload")]
        assert b"".join(parts) == b"Email;Name\nana@example.com;Someone\n"
        # Nothing in the database reads in clear.
        raw = await open_store(database_url, migrate=False)
        try:
            dumped = repr(await raw._read("SELECT * FROM import_parts", {}))  # type: ignore[attr-defined]
            dumped += repr(await raw._read("SELECT * FROM import_jobs", {}))  # type: ignore[attr-defined]
        finally:
            await raw.close()
        assert "ana@" not in dumped and "m.csv" not in dumped

        # Erasing Ana (however her email is written) removes her job's file, not Bob's.
        assert await store.erase_imports(" ANA@example.com") == 1
        assert await store.get_import("a" * 16) is None
        assert not [part async for part in store.import_parts("a" * 16, "upload")]
        assert await store.erase_imports("ana@example.co") == 0  # a cell, not a substring
        assert await store.get_import("b" * 16) is not None

        # A day after its last change, an import goes.
        assert await store.purge_imports(now - KEEP) == 0
        await store.touch_import("b" * 16, now - KEEP - 60)
        assert await store.purge_imports(now - KEEP) == 1
        assert await store.recent_imports() == []
    finally:
        await store.close()


def upload(base: str, client: httpx.Client, members: bytes, name: str = "m.csv") -> str:
    """Upload `members` through the first hook; the import's page address."""
    html = client.get(f"{base}/admin/import").text
    hook = re.search(r'<option value="(hk_[0-9a-f]+)"', html)
    assert hook is not None
    sent = client.post(f"{base}/admin/import",
                       data={"csrf": token_in(html), "hook": hook.group(1)},
                       files={"file": (name, members)})  # fmt: skip
    assert sent.status_code == 303, sent.text
    return str(sent.headers["location"])


def confirm_columns(client: httpx.Client, job: str) -> None:
    """Accept the matching step as the relay guessed it (each select's chosen column)."""
    html = client.get(job).text
    form = {"csrf": token_in(html)}
    for name, options in re.findall(r'<select [^>]*name="(column:\w+)"[^>]*>(.*?)</select>', html,
                                    re.S):  # fmt: skip
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        form[name] = chosen.group(1) if chosen else ""
    answer = client.post(f"{job}/columns", data=form)
    assert answer.status_code == 303, answer.text


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/admin/login")
    client.post("/admin/login", data={"csrf": token_in(form.text), "password": PASSWORD})
    return client


def wait_for(client: httpx.Client, job: str, phase: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state: dict[str, object] = client.get(f"{job}/progress").json()
        if state["phase"] == phase:
            return state
        time.sleep(0.1)
    raise AssertionError(f"{job} never reached {phase}: {state}")


def test_two_relays_on_one_machine_never_see_each_others_imports_and_erase_reaches_them(
    sandbox: tuple[str, State], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"  # the servers' temporary folder: nothing of an import lands there
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_a = {**environment(sandbox[0], tmp_path / "a"), "RELAY_ADMIN_PASSWORD": PASSWORD}
    env_b = {**environment(sandbox[0], tmp_path / "b"), "RELAY_ADMIN_PASSWORD": PASSWORD}
    mint_hook(env_a)
    mint_hook(env_b)
    members = (b"External ID,Email,First Name,Points\nGYM-1,ana@example.com,Ana,lots\n"
               b"GYM-2,bob@example.com,Bob,5\n")  # fmt: skip
    with (relay_on_sandbox(sandbox[0], tmp_path / "a", RELAY_ADMIN_PASSWORD=PASSWORD) as a,
          relay_on_sandbox(sandbox[0], tmp_path / "b", RELAY_ADMIN_PASSWORD=PASSWORD) as b,
          closing(signed_in(a)) as at_a, closing(signed_in(b)) as at_b):  # fmt: skip
        job = upload(a, at_a, members, "front desk.csv")
        other = upload(a, at_a, b"External ID,Email,First Name\nGYM-3,cy@example.com,Cy\n")
        # A required field left unmatched, a column chosen twice: said beside the fields.
        csrf = token_in(at_a.get(job).text)
        refused = at_a.post(f"{job}/columns", data={
            "csrf": csrf, "column:external_id": "", "column:email": "Email",
            "column:first_name": "Email"})  # fmt: skip
        assert refused.status_code == 422
        assert refused.text.count('aria-invalid="true" aria-describedby') == 3, refused.text
        assert "Every row needs this" in refused.text and "another field too" in refused.text
        confirm_columns(at_a, job)
        wait_for(at_a, job, "checked")
        at_a.post(f"{job}/run", data={"csrf": token_in(at_a.get(job).text)})
        assert wait_for(at_a, job, "finished")["failed"] == 1  # Ana's points are bad
        failed = at_a.get(f"{job}/failed.csv")
        assert failed.status_code == 200 and b"ana@example.com" in failed.content
        assert "front desk.csv" in at_a.get("/admin/import").text

        # Relay B, same machine and user, its own database: no trace of A's imports.
        assert "front desk.csv" not in at_b.get("/admin/import").text
        for path in (job, f"{job}/failed.csv", f"{job}/progress", other):
            assert at_b.get(path).status_code in (403, 404), path
        assert not list(scratch.iterdir())

        # `relay erase` on A removes Ana's import (upload and failed rows), not Cy's.
        erased = relay(env_a, "erase", "ana@example.com")
        assert erased.returncode == 0, erased.stderr
        assert "Import files (uploads and failed rows): 2" in erased.stdout
        assert at_a.get(job).status_code == 403
        assert at_a.get(f"{job}/failed.csv").status_code == 403
        assert at_a.get(other).status_code == 200

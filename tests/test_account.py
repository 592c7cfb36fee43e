"""The live connection check on real servers: `relay check --live`, the console's PassKit page
and mint-form pickers, and the start-up line, against the PassKit sandbox under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from relay.app import log_connection
from relay.commands.cli import main
from relay.passkit.account import REFUSED, WRONG_REGION, load_account
from relay.passkit.client import PassKitClient
from relay.sandbox import DEMO_DRAFT_PROGRAM_ID, DEMO_PROGRAM_ID, DEMO_VENUE_ID, State

from .conftest import BASE_ENV, SHIPPED_TEMPLATES, make_settings
from .servers import relay_on_sandbox

PASSWORD = "correct horse battery staple"
TEST_PASS = "Test Pass - Not for Commercial Use"


def check_live(capsys: pytest.CaptureFixture[str], url: str, **env: str) -> tuple[int, str]:
    try:
        code = main(["check", "--live"], env={**BASE_ENV, "PASSKIT_API_URL": url, **env})
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().out


def test_check_live_lists_the_account(
    capsys: pytest.CaptureFixture[str], sandbox: tuple[str, State]
) -> None:
    code, out = check_live(capsys, sandbox[0])
    assert code == 0, out
    assert f"ok: {SHIPPED_TEMPLATES} templates" in out  # the offline checks still come first
    assert f"program Sandbox Coffee Club  {DEMO_PROGRAM_ID}" in out
    assert "  tier Silver  silver" in out
    assert f"program Sandbox Tea Club  {DEMO_DRAFT_PROGRAM_ID}  (draft)" in out
    assert "campaign Sandbox Welcome Coupons" in out and "offer 10% off your next order" in out
    assert "production Sandbox Live" in out and "ticket type General Admission" in out
    assert f"venue Sandbox Arena  {DEMO_VENUE_ID}" in out
    assert "2 programs (1 in draft), 1 campaign, 1 production" in out
    drafts = [line for line in out.splitlines() if TEST_PASS in line]
    assert len(drafts) == 1 and drafts[0].startswith("warning: Program “Sandbox Tea Club”")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_live_says_what_to_change(
    capsys: pytest.CaptureFixture[str], sandbox: tuple[str, State]
) -> None:
    url, state = sandbox
    code, out = check_live(capsys, url, PASSKIT_API_SECRET="not-the-secret")
    assert code == 1 and out.splitlines()[-1] == f"problem: {REFUSED}"
    state.account_elsewhere = True
    code, out = check_live(capsys, url)
    assert code == 1 and out.splitlines()[-1] == f"problem: {WRONG_REGION}"
    nowhere = f"127.0.0.1:{free_port()}"
    code, out = check_live(capsys, f"http://{nowhere}")
    assert code == 1
    assert out.splitlines()[-1] == f"problem: cannot reach {nowhere}: check the network"
    assert sum(line.startswith("problem:") for line in out.splitlines()) == 1


def test_lists_are_read_as_a_bounded_stream(sandbox: tuple[str, State]) -> None:
    async def run() -> None:
        client = PassKitClient(make_settings(PASSKIT_API_URL=sandbox[0]))
        try:
            whole = await client.list_records("POST", "/members/programs/list", {"limit": 100})
            cut = await client.list_records("POST", "/members/programs/list", {}, max_bytes=10)
            one = await client.list_records("POST", "/members/programs/list", {"limit": 1})
        finally:
            await client.aclose()
        assert whole.ok and whole.complete and len(whole.records) == 2
        assert not cut.complete  # stopped reading past 10 bytes (after that first chunk)
        assert [r["id"] for r in one.records] == [DEMO_PROGRAM_ID]

    asyncio.run(run())


def test_start_up_line(sandbox: tuple[str, State], caplog: pytest.LogCaptureFixture) -> None:
    async def run(**settings: str) -> None:
        client = PassKitClient(make_settings(PASSKIT_API_URL=sandbox[0], **settings))
        try:
            await log_connection(client, timeout=3)
            assert (await load_account(client)).program(DEMO_PROGRAM_ID) is not None
        finally:
            await client.aclose()

    with caplog.at_level(logging.INFO, "relay"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"PassKit: connected to {sandbox[0].removeprefix('http://')} as pk-test-key, "
        "2 programs (1 in draft), 1 campaign, 1 production; in draft (test passes that "
        "expire in two days): Sandbox Tea Club"
    ]
    caplog.clear()
    sandbox[1].account_elsewhere = True
    with caplog.at_level(logging.INFO, "relay"), pytest.raises(Exception, match="other one"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [f"PassKit: {WRONG_REGION}"]
    assert not any(r.exc_info for r in caplog.records)


@pytest.fixture
def console(sandbox: tuple[str, State], tmp_path: Path) -> Iterator[httpx.Client]:
    """The relay on the sandbox, signed in to its admin console."""
    with (
        relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        login = client.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf
        signed_in = client.post("/admin/login", data={"csrf": csrf.group(1), "password": PASSWORD})
        assert signed_in.status_code in (200, 303)
        yield client


def test_console_passkit_page_and_pickers(console: httpx.Client) -> None:
    page = console.get("/admin/passkit")
    assert page.status_code == 200
    assert 'href="/admin/passkit" aria-current="page">PassKit' in page.text
    assert "Sandbox Coffee Club" in page.text and DEMO_PROGRAM_ID in page.text
    assert "Silver <code>silver</code>" in page.text and "Sandbox Arena" in page.text
    assert TEST_PASS in page.text and "Sandbox Tea Club" in page.text

    form = console.get("/admin/hooks/new", params={"template": "member-upsert"})
    assert form.status_code == 200
    html = form.text
    assert '<select id="p-program_id" name="param:program_id"' in html
    assert f'<option value="{DEMO_PROGRAM_ID}" >Sandbox Coffee Club · {DEMO_PROGRAM_ID}' in html
    assert "Sandbox Tea Club (draft)" in html
    # One tier list per program (a script shows only the chosen program's), names first.
    assert f'name="pick:tier_id:{DEMO_PROGRAM_ID}"' in html
    assert f'name="pick:tier_id:{DEMO_DRAFT_PROGRAM_ID}"' in html
    assert "Tier in Sandbox Coffee Club" in html and "Tier in Sandbox Tea Club" in html
    assert '<option value="gold" >Gold</option>' in html
    assert TEST_PASS not in html  # no program chosen yet: no draft warning
    assert "setting program_id" not in html  # setting names only under Technical details

    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    minted = console.post(
        "/admin/hooks/new",
        data={"csrf": csrf.group(1), "template": "member-upsert", "label": "draft test",
              "param:program_id": DEMO_DRAFT_PROGRAM_ID,
              f"pick:tier_id:{DEMO_PROGRAM_ID}": "gold",  # another program's list: not taken
              f"pick:tier_id:{DEMO_DRAFT_PROGRAM_ID}": "base"},
    )  # fmt: skip
    assert minted.status_code == 303
    minted = console.get(minted.headers["location"])
    assert minted.status_code == 200 and "/hooks/" in minted.text
    assert '<div class="warning" role="status">Program “Sandbox Tea Club”' in minted.text
    assert "Base" in minted.text  # the tier picked from the chosen program's list


def test_a_mint_problem_stands_beside_its_field_in_words(console: httpx.Client) -> None:
    html = console.get("/admin/hooks/new", params={"template": "member-upsert"}).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    refused = console.post(
        "/admin/hooks/new",
        data={"csrf": csrf.group(1), "template": "member-upsert", "label": "wrong tier",
              "param:program_id": DEMO_PROGRAM_ID, "other:tier_id": "platinum"},
    )  # fmt: skip
    assert refused.status_code == 422
    failing = refused.text.split('<div class="setting failing">')[1]
    assert failing.index('id="problem-tier_id"') < failing.index('<div class="setting')
    problem = re.search(r'id="problem-tier_id" role="alert">([^<]+)<', refused.text)
    words = unescape(problem.group(1)) if problem else ""
    assert words.startswith("Tier 'platinum' is not a tier of program Sandbox Coffee Club")
    assert "tier_id" not in words  # words, not the setting's name
    assert 'aria-describedby="problem-tier_id"' in refused.text


def test_console_falls_back_to_text_boxes(
    console: httpx.Client, sandbox: tuple[str, State]
) -> None:
    sandbox[1].account_elsewhere = True
    form = console.get("/admin/hooks/new", params={"template": "member-upsert"})
    assert form.status_code == 200
    assert '<input id="p-program_id" name="param:program_id"' in form.text
    assert WRONG_REGION in form.text
    page = console.get("/admin/passkit")
    assert page.status_code == 200 and WRONG_REGION in page.text

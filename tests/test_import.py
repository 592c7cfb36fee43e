"""`relay import` end to end: the command line as a separate process, the PassKit sandbox as a real
server, members counted where PassKit keeps them. A 1,000-row CSV with 20 bad rows (and quoted
notes that span lines, so rows and file lines part ways): the dry run names exactly those lines
and sends nothing; the run enrols 980 and writes the 20 to --failed-to; a rerun sends nothing;
a run killed with SIGKILL and resumed enrols each member once."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from relay.imports.importer import IN_FLIGHT
from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.sandbox.faults import Faults

from .conftest import BASE_ENV, ROOT
from .test_admin_browser import PASSWORD, browser_page, relay_url, shots

__all__ = ["browser_page", "relay_url", "shots"]  # the fixtures, used by name below

ROWS = 1_000
ENROL = "POST /members/member"
BAD = {  # what is wrong with a bad row, in the relay's words
    0: ("not-an-email", "10", "email: is not an email address"),
    1: ("", "10", "email is required"),
    2: ("ok@example.com", "lots", "points: must be a number"),
}


def write_members(path: Path, rows: int = ROWS) -> dict[int, str]:
    """The members' CSV; returns each bad row's line in the file → its external id. Every 7th
    member has notes on two lines, so from the second row on, row number ≠ line number."""
    bad: dict[int, str] = {}
    line = 1
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["External ID", "Email", "First Name", "Notes", "Points"])
        for n in range(rows):
            line += 1
            external_id = f"GYM-{n:04d}"
            notes = "Joined at the front desk\nPrefers mornings" if n % 7 == 1 else ""
            email, points = f"m{n}@example.com", str(n % 90)
            if n % 50 == 17:  # 20 bad rows, of three kinds
                email, points, _ = BAD[(n // 50) % 3]
                bad[line] = external_id
            writer.writerow([external_id, email, f"Member {n}", notes, points])
            line += notes.count("\n")
    return bad


def relay(
    env: Mapping[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def environment(sandbox_url: str, folder: Path) -> dict[str, str]:
    # The outbound rate limit has tests of its own; here it would only make 1,000 rows slow.
    return {**BASE_ENV, "PASSKIT_API_URL": sandbox_url, "PASSKIT_RATE_LIMIT": "off",
            "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}"}  # fmt: skip


def mint_hook(env: Mapping[str, str]) -> tuple[str, str]:
    """(hook id, hook URL) of a member-upsert hook into the sandbox's demo program."""
    params = ["--param", f"program_id={DEMO_PROGRAM_ID}", "--param", "tier_id=base",
              "--param", "timezone=UTC"]  # fmt: skip
    minted = relay(env, "url", "member-upsert", *params, "--label", "Members", "--offline")
    assert minted.returncode == 0, minted.stderr
    hook_id = re.search(r"hook (hk_[0-9a-f]+)", minted.stdout)
    assert hook_id is not None
    return hook_id.group(1), minted.stdout.strip().splitlines()[-1]


def members(state: State) -> list[str]:
    return [m["externalId"] for m in state.members.values() if m["programId"] == DEMO_PROGRAM_ID]


def failed_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:  # written with a byte-order mark
        return list(csv.DictReader(file))


def test_dry_run_then_import_then_rerun(sandbox: tuple[str, State], tmp_path: Path) -> None:
    url, state = sandbox
    env = environment(url, tmp_path)
    _, hook_url = mint_hook(env)
    members_csv, failed_csv = tmp_path / "members.csv", tmp_path / "failed.csv"
    bad = write_members(members_csv)
    assert len(bad) == 20

    dry = relay(env, "import", str(members_csv), "--hook", hook_url, "--dry-run")
    assert dry.returncode == 1
    listed = {int(n): text for n, text in re.findall(r"^line (\d+): (.+)$", dry.stdout, re.M)}
    assert sorted(listed) == sorted(bad)
    assert all(any(words in listed[line] for *_, words in BAD.values()) for line in listed)
    assert "20 of 1,000 rows have a problem" in dry.stderr
    assert sum(state.calls.values()) == 0 and members(state) == []  # nothing sent

    run = relay(env, "import", str(members_csv), "--hook", hook_url, "--failed-to", str(failed_csv))
    assert run.returncode == 1, run.stderr  # not every row succeeded
    assert "980 of 1,000 rows succeeded: 980 sent to PassKit" in run.stdout
    assert sorted(members(state)) == sorted(f"GYM-{n:04d}" for n in range(ROWS)
                                            if f"GYM-{n:04d}" not in bad.values())  # fmt: skip
    assert state.calls[ENROL] == 980
    failed = failed_rows(failed_csv)
    assert sorted(row["External ID"] for row in failed) == sorted(bad.values())
    assert all(row["Import problem"] for row in failed)

    calls = sum(state.calls.values())
    rerun = relay(
        env, "import", str(members_csv), "--hook", hook_url, "--failed-to", str(failed_csv)
    )
    assert rerun.returncode == 1
    assert "0 sent to PassKit; 980 were already imported" in rerun.stdout
    assert sum(state.calls.values()) == calls  # a rerun issues nothing

    # The failed rows, fixed in place and imported as they are (the problem column ignored).
    with failed_csv.open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    for row in rows[1:]:
        row[1], row[4] = f"{row[0].lower()}@example.com", "5"
    with failed_csv.open("w", encoding="utf-8-sig", newline="") as file:
        csv.writer(file).writerows(rows)
    fixed = relay(env, "import", str(failed_csv), "--hook", hook_url)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(members(state)) == ROWS


def test_killed_run_resumes_each_row_once(sandbox: tuple[str, State], tmp_path: Path) -> None:
    url, state = sandbox
    env = environment(url, tmp_path)
    hook_id, _ = mint_hook(env)
    members_csv, failed_csv = tmp_path / "members.csv", tmp_path / "failed.csv"
    bad = write_members(members_csv)
    progress = tmp_path / "members.csv.import-progress"
    argv = [sys.executable, "-m", "relay", "import", str(members_csv), "--hook", hook_id,
            "--failed-to", str(failed_csv)]  # fmt: skip
    with subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as running:  # fmt: skip
        deadline = time.monotonic() + 60
        while not _finished(progress, 200):
            assert running.poll() is None and time.monotonic() < deadline, "stopped too soon"
            time.sleep(0.02)
        running.send_signal(signal.SIGKILL)
        running.wait(10)
    assert 200 <= len(members(state)) < 980, "killed mid-run"

    resumed = relay(env, "import", str(members_csv), "--hook", hook_id, "--failed-to",
                    str(failed_csv), "--resume")  # fmt: skip
    assert resumed.returncode == 1, resumed.stderr
    assert "980 of 1,000 rows succeeded" in resumed.stdout
    enrolled = members(state)
    assert len(enrolled) == 980 and len(set(enrolled)) == 980
    assert not set(enrolled) & set(bad.values())
    # Only the rows in flight at the kill may be asked of PassKit again (and found, not re-made).
    assert 980 <= state.calls[ENROL] <= 980 + IN_FLIGHT
    assert sorted(row["External ID"] for row in failed_rows(failed_csv)) == sorted(bad.values())
    assert not progress.exists()  # every row settled


def _finished(progress: Path, at_least: int) -> bool:
    try:
        text = progress.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return text.count("\nok ") >= at_least


def test_console_upload_checks_then_imports_with_a_progress_bar(
    browser_page: object, relay_url: str, sandbox: tuple[str, State], tmp_path: Path,
    shots: Path,
) -> None:  # fmt: skip
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    sandbox_url, state = sandbox
    mint_hook(environment(sandbox_url, tmp_path))  # the relay_url server's database
    members_csv = tmp_path / "front-desk members.csv"
    bad = write_members(members_csv, rows=120)
    assert len(bad) == 3
    state.faults = Faults(latency_ms=40)  # long enough to watch the bar move

    page.goto(f"{relay_url}/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Import").click()
    picker = page.get_by_label("Hook the rows go through")
    picker.select_option(label="Members: Enrol or update a member")
    page.get_by_label(re.compile("^CSV file")).set_input_files(str(members_csv))
    page.get_by_role("button", name="Check the file").click()
    # The columns are named as the hook's fields: each is matched already.
    expect(page.get_by_label("Email (required)")).to_have_value("Email")
    page.get_by_role("button", name="Check the rows").click()

    # The check: the bad rows by their line in the file, nothing sent.
    expect(page.get_by_role("alert")).to_contain_text("3 of 120 rows have a problem")
    lines = page.locator("tbody tr td:first-child").all_inner_texts()
    assert sorted(map(int, lines)) == sorted(bad)
    expect(page.locator("tbody")).to_contain_text("email: is not an email address")
    assert state.calls[ENROL] == 0 and members(state) == []  # (the console reads the account)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), width
        page.screenshot(path=str(shots / f"import-checked-{width}.png"), full_page=True)

    # The run: a live bar, then the outcome and the failed rows to download.
    page.get_by_role("button", name="Import 117 members").click()
    expect(page.locator("#words")).to_contain_text("of 120 rows done")
    page.screenshot(path=str(shots / "import-running-375.png"), full_page=True)
    expect(page.get_by_role("status")).to_contain_text(
        "Done: 117 of 120 members imported, 3 failed", timeout=30_000
    )
    assert page.locator("#bar").get_attribute("value") == "120"
    assert len(members(state)) == 117
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the 3 failed rows").click()
    failed = tmp_path / "failed.csv"
    download.value.save_as(failed)
    assert sorted(row["External ID"] for row in failed_rows(failed)) == sorted(bad.values())
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), width
        page.screenshot(path=str(shots / f"import-done-{width}.png"), full_page=True)

    # An upload with a forged form token is refused, like every console POST.
    forged = page.request.post(f"{relay_url}/admin/import", multipart={
        "csrf": "forged", "hook": "hk_0", "file": {"name": "m.csv", "mimeType": "text/csv",
                                                    "buffer": b"Email\na@b.c\n"}})  # fmt: skip
    assert forged.status == 403

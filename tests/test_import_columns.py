"""Importing a spreadsheet with its own column names: the best-guessing column preselected for
each of the hook's fields (from the header and the first rows), only matched columns sent, the
key of each row made of the matched fields (a re-run with the same matching sends nothing
twice), every problem of every row listed, and no hook preselected; in Chromium at 1280 and
375 px, and in the terminal with --map."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from relay.delivery.templating import FieldSpec
from relay.imports.columns import columns_of, guess
from relay.sandbox import DEMO_PROGRAM_ID, State

from .page_checks import PageChecks
from .test_admin_browser import PASSWORD, browser_page, relay_url, shots
from .test_import import environment, members, mint_hook, relay

__all__ = ["browser_page", "relay_url", "shots"]  # the fixtures, used by name below

OWN_HEADER = ["Member No", "Given name", "E-mail address", "Phone", "Notes"]
OWN_ROWS = [
    ["M-100", "Ana", "ana@example.com", "+442079460958", "front desk"],
    ["M-101", "Bo", "bo@example.com", "+442079460959", ""],
    ["M-102", "Cy", "not an email", "12", "two problems"],  # bad email and bad mobile
]


def write_own(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([OWN_HEADER, *OWN_ROWS])


def test_guess_reads_headers_and_content() -> None:
    fields = [FieldSpec("external_id", True), FieldSpec("email", True, type="email"),
              FieldSpec("first_name"), FieldSpec("last_name"), FieldSpec("mobile", type="phone"),
              FieldSpec("points", type="number")]  # fmt: skip
    guessed = guess(fields, columns_of(OWN_HEADER, [r for r in OWN_ROWS]))
    assert guessed == {"external_id": 0, "first_name": 1, "email": 2, "mobile": 3,
                       "last_name": None, "points": None}  # fmt: skip
    # An @ finds the email column even under a name nobody expects.
    odd = columns_of(["Kontakt", "Nummer"], [["ana@example.com", "1"], ["bo@example.com", "2"]])
    assert guess(fields, odd)["email"] == 0


def test_cli_imports_a_spreadsheet_through_map(sandbox: tuple[str, State], tmp_path: Path) -> None:
    env = environment(sandbox[0], tmp_path)
    _, hook = mint_hook(env)
    own = tmp_path / "own.csv"
    write_own(own)
    maps = ["--map", "Member No=external_id", "--map", "E-mail address=email",
            "--map", "Given name=first_name", "--map", "Phone=mobile"]  # fmt: skip
    dry = relay(env, "import", str(own), "--hook", hook, "--dry-run", *maps)
    assert dry.returncode == 1
    problems = re.findall(r"^line (\d+): (.+)$", dry.stdout, re.M)
    assert [line for line, _ in problems] == ["4", "4"], dry.stdout  # both of row 3's problems
    assert "email" in problems[0][1] and "mobile" in problems[1][1]

    run = relay(env, "import", str(own), "--hook", hook, *maps)
    assert "2 of 3 rows succeeded: 2 sent to PassKit" in run.stdout, run.stdout + run.stderr
    made = {m["externalId"]: m for m in sandbox[1].members.values()
            if m["programId"] == DEMO_PROGRAM_ID}  # fmt: skip
    assert sorted(made) == ["M-100", "M-101"]
    assert made["M-100"]["person"]["forename"] == "Ana"
    assert "front desk" not in repr(made["M-100"])  # Notes was not matched: not sent
    calls = sum(sandbox[1].calls.values())
    again = relay(env, "import", str(own), "--hook", hook, *maps)
    assert "0 sent to PassKit; 2 were already imported" in again.stdout, again.stdout
    assert sum(sandbox[1].calls.values()) == calls  # the same matching sends nothing twice

    wrong = relay(env, "import", str(own), "--hook", hook, "--map", "Member Nr=external_id")
    assert wrong.returncode == 2 and "no column 'Member Nr'" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_console_matches_a_spreadsheets_own_columns(
    browser_page: object, relay_url: str, sandbox: tuple[str, State], tmp_path: Path,
    shots: Path,
) -> None:  # fmt: skip
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    sandbox_url, state = sandbox
    env = environment(sandbox_url, tmp_path)
    relay(env, "url", "member-points-earn", "--param", f"program_id={DEMO_PROGRAM_ID}",
          "--label", "Visits", "--offline")  # fmt: skip
    mint_hook(env)
    own = tmp_path / "own members.csv"
    write_own(own)
    check = PageChecks(page, shots, "import-columns-")

    page.goto(f"{relay_url}/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Import").click()
    picker = page.get_by_label("Hook the rows go through")
    expect(picker).to_have_value("")  # no hook chosen for the operator (a points hook!)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        check(f"upload-{width}")
    picker.select_option(label="Members: Enrol or update a member")
    page.get_by_label(re.compile("^CSV file")).set_input_files(str(own))
    page.get_by_role("button", name="Check the file").click()

    # The matching step: each field with the column that best matches preselected.
    expect(page.get_by_role("heading", name="Match your columns")).to_be_visible()
    expect(page.get_by_label("External id (required)")).to_have_value("Member No")
    expect(page.get_by_label("Email (required)")).to_have_value("E-mail address")
    expect(page.get_by_label("First name", exact=True)).to_have_value("Given name")
    expect(page.get_by_label("Mobile", exact=True)).to_have_value("Phone")
    expect(page.get_by_label("Last name", exact=True)).to_have_value("")  # not in this file
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        check(f"matching-{width}")
    page.get_by_role("button", name="Check the rows").click()

    # Every problem of the bad row, then the import of the good ones.
    expect(page.get_by_role("alert")).to_contain_text("1 of 3 rows have a problem")
    cell = page.locator("tbody tr td").nth(1)
    expect(cell).to_contain_text("email")
    expect(cell).to_contain_text("mobile")
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        check(f"checked-{width}")
    page.get_by_role("button", name="Import 2 members").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Done: 2 of 3 members imported, 1 failed", timeout=30_000
    )
    assert sorted(members(state)) == ["M-100", "M-101"]
    made = {m["externalId"]: m for m in state.members.values()}
    assert made["M-100"]["person"]["forename"] == "Ana"
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        check(f"done-{width}")

"""What an import reads and writes besides plain UTF-8: UTF-8 with or without Excel's mark and
UTF-16 with its mark read as they are; anything else shown as Windows-1252 and read only once
the operator confirms (`--encoding cp1252`, the console's "they read right"), never a 500 or a
traceback; and the failed-rows file: UTF-8 with a mark, formula-looking cells defused with a
leading `'` that the importer drops again, so the file re-imports unchanged."""

from __future__ import annotations

import asyncio
import csv
import re
from contextlib import closing
from pathlib import Path

import pytest

from relay.imports.csvfile import FailedRows, MemberFile, NotUtf8
from relay.sandbox import DEMO_PROGRAM_ID, State

from .servers import relay_on_sandbox
from .test_admin import PASSWORD, token_in
from .test_import import environment, members, mint_hook, relay
from .test_import_private import confirm_columns, signed_in, upload, wait_for

HEADER = ["External ID", "Email", "First Name", "Mobile", "Points"]
AWKWARD = [  # cells a spreadsheet would run as formulas, a phone and negative points
    ["AW-1", "not-an-email", '=HYPERLINK("http://x")', "+44 20 7946 0958", "+3"],
    ["AW-2", "also bad", "@home", "+442079460959", "-5"],
    ["AW-3", "bad@", "\tTabbed", "+44 20 7946 0960", "7"],
]


def write(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    with path.open("w", encoding=encoding, newline="") as file:
        csv.writer(file).writerows([HEADER, *rows])


def test_failed_rows_are_defused_for_spreadsheets_and_re_import_unchanged(tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    write(source, AWKWARD)
    original = MemberFile(source)
    failed_path = tmp_path / "failed.csv"
    failed = FailedRows(failed_path, original.header)

    async def fail_all() -> None:
        for row in original.rows():
            await failed.add(row, "email: is not an email address")
        await failed.close()

    asyncio.run(fail_all())
    raw = failed_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    written = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert written[1][2:5] == ['\'=HYPERLINK("http://x")', "'+44 20 7946 0958", "'+3"]
    assert written[2][4] == "'-5"
    assert written[2][2] == "'@home" and written[3][2] == "'\tTabbed"
    assert all(not cell.startswith(("=", "+", "-", "@", "\t")) for row in written for cell in row)

    again = MemberFile(failed_path)
    assert again.header[:5] == HEADER
    before = [original.payload(row).fields for row in original.rows()]
    after = [again.payload(row).fields for row in again.rows()]
    assert after == before  # the `'` is gone and the problem column ignored
    assert after[0]["mobile"] == "+44 20 7946 0958" and after[1]["points"] == "-5"
    # A value that merely starts with an apostrophe keeps it.
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("Email,Name\na@example.com,'Tis me\n", encoding="utf-8")
    assert next(MemberFile(quoted).rows()).cells == ["a@example.com", "'Tis me"]


def test_utf8_with_and_without_mark_and_utf16_are_read_and_others_need_a_yes(
    tmp_path: Path,
) -> None:
    rows = [["GYM-1", "jose@example.com", "José", "", "1"]]
    for name, encoding in (("plain", "utf-8"), ("excel", "utf-8-sig"), ("utf16", "utf-16")):
        write(tmp_path / f"{name}.csv", rows, encoding)
        file = MemberFile(tmp_path / f"{name}.csv")
        assert file.header == HEADER, name
        assert [r.cells for r in file.rows()] == rows, name
    write(tmp_path / "windows.csv", rows, "cp1252")
    with pytest.raises(NotUtf8) as refused:
        MemberFile(tmp_path / "windows.csv")
    assert refused.value.preview[1][2] == "José"
    confirmed = MemberFile(tmp_path / "windows.csv", encoding="cp1252")
    assert [r.cells for r in confirmed.rows()] == rows
    # Bytes Windows-1252 has no letter for: refused in words, nothing to preview.
    (tmp_path / "binary.csv").write_bytes(b"Email\n\x81\x8d\x90\xff\n")
    with pytest.raises(NotUtf8) as binary:
        MemberFile(tmp_path / "binary.csv")
    assert binary.value.preview == []


def test_cli_shows_a_windows_file_then_imports_it_when_told(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    env = environment(sandbox[0], tmp_path)
    _, hook = mint_hook(env)
    windows = tmp_path / "windows.csv"
    write(windows, [["GYM-1", "jose@example.com", "José", "", "1"]], "cp1252")
    refused = relay(env, "import", str(windows), "--hook", hook)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr + refused.stdout
    assert "José" in refused.stderr and "--encoding cp1252" in refused.stderr
    assert members(sandbox[1]) == []
    done = relay(env, "import", str(windows), "--hook", hook, "--encoding", "cp1252")
    assert done.returncode == 0, done.stderr
    assert members(sandbox[1]) == ["GYM-1"]

    utf16 = tmp_path / "utf16.csv"
    write(utf16, [["GYM-2", "ana@example.com", "Ana", "", "1"]], "utf-16")
    read = relay(env, "import", str(utf16), "--hook", hook)
    assert read.returncode == 0, read.stderr
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\xff\xfeE\x00m\x00a\x00i\x00l\x00\n")  # UTF-16 cut mid-letter
    for path in (broken, tmp_path / "binary.csv", tmp_path / "missing.csv"):
        if path.name == "binary.csv":
            path.write_bytes(b"Email\n\x81\x8d\x90\n")
        said = relay(env, "import", str(path), "--hook", hook)
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        assert said.stderr.startswith("relay: "), said.stderr

    # A failed-rows file, fixed only in its emails, imports the phones and points as they were.
    awkward, failed = tmp_path / "awkward.csv", tmp_path / "failed.csv"
    write(awkward, AWKWARD)
    run = relay(env, "import", str(awkward), "--hook", hook, "--failed-to", str(failed))
    assert run.returncode == 1 and "3 rows failed" in run.stdout, run.stdout + run.stderr
    with failed.open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    for row in rows[1:]:
        row[1] = f"{row[0].lower()}@example.com"
    with failed.open("w", encoding="utf-8-sig", newline="") as file:
        csv.writer(file).writerows(rows)
    again = tmp_path / "again.csv"
    fixed = relay(env, "import", str(failed), "--hook", hook, "--failed-to", str(again))
    assert "2 of 3 rows succeeded" in fixed.stdout, fixed.stdout + fixed.stderr
    made = {m["externalId"]: m for m in sandbox[1].members.values()
            if m["programId"] == DEMO_PROGRAM_ID}  # fmt: skip
    assert made["AW-1"]["person"]["mobileNumber"].replace(" ", "") == "+442079460958"
    assert made["AW-1"]["person"]["forename"] == '=HYPERLINK("http://x")'
    assert made["AW-3"]["person"]["forename"] == "Tabbed"  # trimmed, as any delivery is
    # -5 reached PassKit as -5 (which the tier refuses), not as the text "'-5".
    (refused,) = list(csv.DictReader(again.read_text(encoding="utf-8-sig").splitlines()))
    assert refused["Points"] == "'-5" and "below zero" in refused["Import problem"]


def test_console_never_answers_500_for_an_encoding(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    env = environment(sandbox[0], tmp_path)
    mint_hook(env)
    windows = "External ID,Email,First Name\nGYM-1,jose@example.com,José\n".encode("cp1252")
    utf16 = "External ID,Email,First Name\nGYM-2,ana@example.com,Ana\n".encode("utf-16")
    with (relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD) as base,
          closing(signed_in(base)) as client):  # fmt: skip
        job = upload(base, client, utf16, "utf16.csv")
        confirm_columns(client, job)
        assert wait_for(client, job, "checked")["total"] == 1

        job = upload(base, client, windows, "windows.csv")
        page = client.get(job)
        assert page.status_code == 200 and "José" in page.text and "Windows-1252" in page.text
        client.post(f"{job}/encoding", data={"csrf": token_in(page.text)})
        confirm_columns(client, job)
        assert wait_for(client, job, "checked")["total"] == 1

        html = client.get("/admin/import").text
        hook = re.search(r'<option value="(hk_[0-9a-f]+)"', html)
        assert hook is not None
        for bad in (b"Email\n\x81\x8d\x90\n", b"\xff\xfeE\x00m\x00a\x00i\x00l\x00\n", b""):
            form = {"csrf": token_in(html), "hook": hook.group(1)}
            sent = client.post("/admin/import", data=form, files={"file": ("bad.csv", bad)})
            assert sent.status_code in (200, 303), sent.status_code
            shown = client.get(sent.headers["location"]) if sent.status_code == 303 else sent
            assert shown.status_code == 200 and 'role="alert"' in shown.text, shown.text[-800:]

"""A gym owner's day in the console, in a real browser (Debian's Chromium, skipped without it
like test_admin_browser.py) at 1280 and 375 px, with the relay and the PassKit sandbox as real
servers. They find people through the search box (by email and by name), see what is still
broken, fix one failure with Edit and resend while the zap's next delivery fixes another (both
leave the open count and read "Fixed by"), replay a "PassKit was busy" group with Replay all,
go Back after Check the pass and reload after an erase (nothing is repeated). Every page is
checked by tests/page_checks.py (DayChecks): no sideways scrolling, no serious or critical axe
finding, every tap target at least 44 px at 375 px (links inside sentences excepted), and a
screenshot each into RELAY_SCREENSHOTS (else a temporary folder) as day-<width>-<page>.png."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from relay.delivery.journal import fix_key
from relay.sandbox import State
from relay.store import DeliveryRecord
from relay.store.personal import name_words, people_in

from .page_checks import DayChecks, sized_page
from .test_admin_browser import browser_page, shots
from .test_failures_console import HOOK, PASSWORD, deliveries, hook_path, register, relay, sandbox

__all__ = ["browser_page", "relay", "sandbox", "shots"]  # the fixtures, used by name below
MARA = {"external_id": "HS-4242", "email": "mara@example.com", "first_name": "Mara",
        "last_name": "Quist", "points": "lots"}  # fmt: skip
JO = {"external_id": "HS-77", "email": "jo@example.com", "first_name": "Jo",
      "last_name": "Brandt", "points": "ten"}  # fmt: skip


def busy(n: int, name: str) -> DeliveryRecord:
    """A delivery the relay held back while PassKit was busy: nothing reached PassKit. Its
    people and name words as the relay's journal finds them (relay.delivery.journal)."""
    request = {"external_id": f"HS-B{n}", "email": f"{name.lower()}@example.com",
               "first_name": name, "last_name": "Okafor"}  # fmt: skip
    return DeliveryRecord(
        at=time.time() - 300 + n, source="hook", hook_id=HOOK.id, template=HOOK.template,
        operation="members.upsert", outcome="failed", status=503, latency_ms=1.0,
        request_id=f"req_busy{n}", error_code="passkit_busy", id=f"dl_busyday000{n}",
        request=request, people=people_in(request), names=name_words(request),
        fix_key=fix_key(None, people_in(request)),
    )  # fmt: skip


@pytest.mark.parametrize("width", [1280, 375])
def test_an_operators_day(
    browser_page: object,
    relay: tuple[str, State, Path],
    shots: Path,
    width: int,
) -> None:
    from playwright.sync_api import expect

    page = sized_page(browser_page, width)
    check = DayChecks(page, shots, f"day-{width}-")
    console, state, folder = relay
    main = page.get_by_role("main")
    url = console + hook_path()

    # The night before: the zap failed for Mara and Jo, and PassKit was busy for two more.
    for zap in (MARA, JO):
        assert httpx.post(url, data=zap, timeout=30).status_code == 422
    register(folder, busy(1, "Ada"), busy(2, "Bea"))

    page.goto(f"{console}/admin/")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    open_count = page.locator(".stat", has_text="still to fix").locator("b")
    expect(open_count).to_have_text("4")
    check("overview")

    # Find a person: by email, then by a whole word of a name, through the search box.
    page.get_by_label("Find a person").fill("mara@example.com")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mara Quist (HS-4242)")
    assert "mara" not in page.url and "%40" not in page.url  # addressed by a blind index
    expect(main).to_contain_text("Not sent: points “lots” is not a number")
    check("person")
    page.get_by_role("link", name="Deliveries", exact=True).click()
    check("deliveries")
    page.get_by_label("Find a person").fill("brandt")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Jo Brandt (HS-77)")
    jo_page = page.url
    page.goto(f"{console}/admin/search")
    page.get_by_label("Find a person").fill("okafor")  # two people share the name
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", name="2 people match")).to_be_visible()
    check("search-two")

    # What is still broken: two causes, each headed by the cause in words.
    page.get_by_role("link", name="Failures", exact=True).click()
    groups = page.locator("section.failure-group")
    expect(groups).to_have_count(2)
    points = groups.filter(has_text="Points")
    expect(points.get_by_role("heading")).to_have_text("Points is not a number")
    expect(points).to_contain_text("Mara Quist")
    expect(points).to_contain_text("Jo Brandt")
    check("failures")

    # Replay all on the busy group: asked first, then one line per delivery.
    crowded = groups.filter(has_text="queued for PassKit")
    crowded.get_by_role("button", name="Replay all 2").click()
    expect(page.get_by_role("heading", name="Replay 2 deliveries?")).to_be_visible()
    check("replay-all-confirm")
    page.get_by_role("button", name="Yes, replay 2").click()
    expect(page.get_by_role("heading", name="Replayed 2")).to_be_visible()
    expect(main.locator("li")).to_have_count(2)
    expect(main.get_by_text("Worked")).to_have_count(2)
    check("replayed")
    page.reload()  # shows the result again, replays nothing
    assert sum(1 for m in state.members.values() if m["externalId"].startswith("HS-B")) == 2
    assert len(deliveries(folder)) == 6

    # Mara's failure: Edit and resend.
    page.get_by_role("link", name="Failures", exact=True).click()
    page.locator("section.failure-group").get_by_role("link", name="See all 2").click()
    check("failure-group")
    row = page.locator("tbody tr", has_text="Mara")
    row.get_by_role("link", name="Mara").click()
    mara_failure = page.url
    check("delivery-failed")
    page.get_by_role("link", name="Edit and resend").click()
    page.get_by_label(re.compile("^Points")).fill("30")
    check("edit-and-resend")
    page.get_by_role("button", name="Send again").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Enrolled Mara Quist (HS-4242) in Base with 30 points"
    )
    check("delivery-resent")

    # Check the pass, then Back: no "Confirm Form Resubmission", nothing read again.
    resent = page.url
    page.get_by_role("button", name="Check the pass").click()
    expect(page.get_by_role("heading", name="What the member sees")).to_be_visible()
    expect(main).to_contain_text("Mara Quist")
    check("pass-checked")
    page.go_back()
    expect(page).to_have_url(resent)
    expect(page.get_by_role("heading", name="What the member sees")).to_have_count(0)
    page.go_forward()
    expect(page.get_by_role("heading", name="What the member sees")).to_be_visible()

    # Jo's failure is fixed by the zap's own next delivery.
    assert httpx.post(url, data={**JO, "points": "10"}, timeout=30).status_code == 200
    for failure in (mara_failure, None):
        page.goto(failure or jo_page)
        if failure is None:
            page.locator("tbody tr", has_text="Not sent").get_by_role("link").first.click()
        expect(main).to_contain_text("Fixed by a later delivery that worked")
        expect(main.get_by_role("button", name="Replay")).to_have_count(0)
        expect(main.get_by_role("link", name="Edit and resend")).to_have_count(0)
    check("delivery-fixed")
    page.get_by_role("link", name="Overview").click()
    expect(open_count).to_have_text("0")
    expect(main).to_contain_text("Nothing to fix.")
    page.get_by_role("link", name="Failures", exact=True).click()
    expect(main).to_contain_text("Nothing to fix: no open failures")
    check("failures-none")

    # Erase Jo (and his PassKit record) from his page; a reload erases nothing again.
    page.goto(jo_page)
    page.get_by_label(re.compile("Also delete")).check()
    page.get_by_role("button", name=re.compile("^Erase Jo")).click()
    expect(page.get_by_role("button", name=re.compile("^Yes, erase"))).to_be_visible()
    check("erase-confirm")
    deletes = state.calls.copy()
    page.get_by_role("button", name=re.compile("^Yes, erase")).click()
    expect(main).to_contain_text("is erased from the relay: 2 records removed")
    check("erased")
    after = state.calls.copy()
    assert after != deletes  # the PassKit delete went out once…
    page.reload()
    expect(main).to_contain_text("is erased from the relay: 2 records removed")
    assert state.calls == after  # …and the reload sent nothing
    assert not any(m["externalId"] == "HS-77" for m in state.members.values())

    # Every other page the operator opens, held to the same checks.
    tour = {"Hooks": "hooks", "Templates": "templates", "PassKit": "passkit",
            "PassKit events": "events", "Import": "import", "Customers": "customers",
            "Erase a person": "erase"}  # fmt: skip
    for link, name in tour.items():
        page.get_by_role("link", name=link, exact=True).click()
        check(name)
    page.get_by_role("link", name="Hooks", exact=True).click()
    page.get_by_role("link", name="Front desk sign-ups").first.click()
    latest = page.locator("table", has=page.get_by_role("columnheader", name="What happened"))
    expect(latest).to_contain_text("Tried to enrol or update Bea Okafor (HS-B2)")  # says who
    expect(latest).to_contain_text("Fixed since")
    check("hook")
    # The new-hook form: the tier list is the chosen program's only, filtered live.
    page.goto(f"{console}/admin/hooks/new?template=member-upsert")
    expect(page.get_by_label(re.compile("^Tier in"))).to_have_count(0)  # no program chosen yet
    page.get_by_label(re.compile("^Program")).select_option("SandboxProgram00000001")
    tiers = page.get_by_label(re.compile("^Tier in Sandbox Coffee Club"))
    expect(tiers.locator("option")).to_have_text(["Choose…", "Base", "Silver", "Gold"])
    check("new-hook")
    page.goto(url)
    check("public-hook-page")

"""The admin console in a real browser (Debian's Chromium driven by Playwright), with the relay
and the PassKit sandbox as real servers: an operator's whole afternoon, with a screenshot of
each page written to a temporary folder (RELAY_SCREENSHOTS to choose it)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay.sandbox import DEMO_PROGRAM_ID, State

from .servers import relay_on_sandbox

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
]
PASSWORD = "browser-test-password"


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = "browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(reason + "; in CI they must run")
    pytest.skip(reason)


@pytest.fixture
def browser_page() -> Iterator[object]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def relay_url(sandbox: tuple[str, State], tmp_path: Path) -> Iterator[str]:
    with relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD) as url:
        yield url


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = os.environ.get("RELAY_SCREENSHOTS") or tempfile.mkdtemp(prefix="relay-shots-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def on_this_server(minted: str, relay_url: str) -> str:
    """A minted URL (on RELAY_PUBLIC_URL) pointed at the test's server on its free port."""
    return relay_url + minted[minted.index("/hooks/") :]


def test_operator_mints_watches_fixes_replays_and_revokes(
    browser_page: object, relay_url: str, sandbox: tuple[str, State], shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    state = sandbox[1]

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    # Signing in: a wrong password first, then the right one.
    page.goto(f"{relay_url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.get_by_label("Admin password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    shot("01-login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Last 24 hours")).to_be_visible()

    # Minting a member-upsert URL for a tier the sandbox does not have yet.
    page.get_by_role("link", name="Hooks", exact=True).click()
    page.get_by_role("link", name="New hook").click()
    page.get_by_label("What should the hook do?").select_option("member-upsert")
    page.get_by_role("button", name="Choose").click()
    shot("02-new-hook")
    page.get_by_label("Label").fill("HubSpot new contact")
    page.get_by_label(re.compile("^Program")).select_option(DEMO_PROGRAM_ID)  # from PassKit
    page.get_by_label("Or type another tier id").fill("platinum")
    page.get_by_role("button", name="Create the URL").click()
    # Refused: the ids are looked up in PassKit when minting, and the refusal lists the tiers.
    expect(page.get_by_role("alert")).to_contain_text("base (Base), silver (Silver), gold (Gold)")
    state.create_tier({"id": "platinum", "programId": DEMO_PROGRAM_ID, "name": "Platinum"})
    page.get_by_label(re.compile("^Program")).select_option(DEMO_PROGRAM_ID)
    page.get_by_label("Or type another tier id").fill("platinum")
    page.get_by_role("button", name="Create the URL").click()
    expect(page.get_by_role("heading", name="Your hook URL")).to_be_visible()
    del state.tiers[(DEMO_PROGRAM_ID, "platinum")]  # …and deleted in PassKit before the zap runs
    expect(page.get_by_role("button", name="Copy URL")).to_be_visible()  # JavaScript ran
    shot("03-minted")
    minted = page.locator("#minted-url").inner_text().strip()
    assert minted.startswith("https://relay.example.com/hooks/")  # RELAY_PUBLIC_URL
    url = on_this_server(minted, relay_url)

    # A Zapier-style form post: PassKit has no such tier, the zap is told what to check.
    zap = {"External ID": "CRM-42", "Email": "ana@example.com", "First Name": "Ana"}
    failed = httpx.post(url, data=zap, timeout=30)
    assert failed.status_code == 404 and "tier_id" in failed.json()["error"]["hint"]
    assert not state.members

    page.get_by_role("link", name="Deliveries").click()
    expect(page.locator("table")).to_contain_text("Not sent:")  # in words, not a code
    expect(page.locator("table")).to_contain_text("Tried to enrol Ana (CRM-42)")
    shot("04-deliveries")
    page.locator("table a").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Not sent: "))).to_be_visible()
    expect(page.locator("main")).to_contain_text("platinum")
    shot("05-failed-delivery")

    # The operator fixes the cause (creates the tier in PassKit) and replays.
    state.create_tier({"id": "platinum", "programId": DEMO_PROGRAM_ID, "name": "Platinum"})
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("main")).to_contain_text("Sent again from an earlier delivery")
    expect(page.locator(".badge").first).to_have_text("Succeeded")
    shot("06-replayed")
    [member] = state.members.values()
    assert member["externalId"] == "CRM-42" and member["tierId"] == "platinum"

    # A second post from the zap now works too, and shows up in the list and its detail.
    again = httpx.post(url, data=zap, timeout=30)
    assert again.status_code == 200
    page.get_by_role("link", name="Deliveries").click()
    expect(page.locator("tbody tr")).to_have_count(3)  # failed, its replay, the new post
    page.locator("tbody tr").first.locator("a").first.click()
    expect(page.locator("main")).to_contain_text(again.json()["request_id"])
    page.get_by_role("link", name="Overview").click()
    expect(page.locator("svg.chart")).to_be_visible()
    shot("07-overview")
    page.get_by_role("link", name="Templates").click()
    page.get_by_role("link", name="Add points").click()  # member-points-earn, by its name
    page.get_by_label(re.compile("^Program")).fill(DEMO_PROGRAM_ID)
    page.get_by_label(re.compile("^External ID")).fill("CRM-42")
    page.get_by_label(re.compile("^Points")).fill("ten")
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_role("alert")).to_contain_text("Points")
    shot("08-template-try")

    # Revoking, with confirmation: the next post from the zap is refused.
    page.get_by_role("link", name="Hooks", exact=True).click()
    expect(page.locator("table")).to_contain_text("HubSpot new contact")
    shot("09-hooks")
    page.get_by_role("link", name="Revoke…").click()
    shot("10-revoke-confirm")
    page.get_by_role("button", name="Yes, revoke it").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked")
    refused = httpx.post(url, data=zap, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_token"

    # The public hook page (what a builder opens) and signing out.
    page.goto(f"{relay_url}/admin/hooks/new?template=member-lookup")
    page.get_by_label(re.compile("^Program")).select_option(DEMO_PROGRAM_ID)
    page.get_by_role("button", name="Create the URL").click()
    page.goto(on_this_server(page.locator("#minted-url").inner_text().strip(), relay_url))
    expect(page.get_by_role("heading", name="Zapier")).to_be_visible()
    page.get_by_label(re.compile("^External ID")).fill("CRM-42")
    page.get_by_role("button", name="Check", exact=True).click()
    expect(page.locator("#result")).to_contain_text("GET /members/member/externalId/")
    shot("11-hook-page")
    page.goto(f"{relay_url}/admin/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(f"{relay_url}/admin/hooks")
    expect(page).to_have_url(re.compile(r"/admin/login"))


def test_pages_fit_a_phone(browser_page: object, relay_url: str, shots: Path) -> None:
    from playwright.sync_api import Page

    page = browser_page
    assert isinstance(page, Page)
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{relay_url}/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    for path in ("/admin/", "/admin/hooks/new?template=member-enrol", "/admin/deliveries"):
        page.goto(relay_url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 380, f"{path} scrolls sideways on a phone ({width}px)"
    page.screenshot(path=str(shots / "12-phone.png"), full_page=True)

"""Fixing failures in a real browser (Debian's Chromium, skipped without it like
test_admin_browser.py): three failures with one cause are one row with the fix in words; from it
the operator edits the newest and resends it to success. At 1280 and 375 px every failures page
fits the screen and has no serious or critical accessibility violation (axe), and each is
photographed into RELAY_SCREENSHOTS (else a temporary folder) as failures-<page>-<width>.png."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from relay.sandbox import State

from .test_admin_browser import PASSWORD, browser_page, relay_url, shots
from .test_failures_console import hook_path, register

__all__ = ["browser_page", "relay_url", "shots"]  # the fixtures, used by name below
WIDE, PHONE = 1280, 375


def test_failures_grouped_then_edited_and_resent_on_a_phone_and_a_desk(
    browser_page: object,
    relay_url: str,
    sandbox: tuple[str, State],
    shots: Path,
    tmp_path: Path,
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    state = sandbox[1]
    page.goto(f"{relay_url}/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Last 24 hours")).to_be_visible()

    register(tmp_path)  # the hook, as minting registers it (the mint form has its own tests)
    url = relay_url + hook_path()
    zap = {"external_id": "HS-4242", "email": "mara@example.com", "first_name": "Mara",
           "points": "lots"}  # fmt: skip
    for _ in range(3):
        assert httpx.post(url, data=zap, timeout=30).status_code == 422

    page.get_by_role("link", name="Failures").click()
    groups = page.locator("section.failure-group")
    expect(groups).to_have_count(1)
    expect(groups).to_contain_text("3× Front desk sign-ups")
    expect(groups).to_contain_text("Points “lots” is not a number.")
    expect(groups).to_contain_text("Fix: Send a number in Points.")
    pages = {"failures": page.url}
    page.get_by_role("link", name="All 3 deliveries with this cause").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    pages["group"] = page.url
    page.locator("tbody tr").first.get_by_role("link").first.click()
    expect(page.locator("#actions")).to_contain_text("No Replay: Points would still be “lots”")
    expect(page.locator("#actions").get_by_role("button", name="Replay")).to_have_count(0)
    pages["delivery"] = page.url
    page.get_by_role("link", name="Edit and resend").click()
    pages["edit"] = page.url

    axe = Axe()
    for width in (WIDE, PHONE):
        page.set_viewport_size({"width": width, "height": 800})
        for name, address in pages.items():
            page.goto(address)
            width_used = page.evaluate("document.documentElement.scrollWidth")
            assert width_used <= width, f"{name} scrolls sideways at {width} px ({width_used} px)"
            found = axe.run(page).response["violations"]
            bad = [v["id"] for v in found if v["impact"] in ("serious", "critical")]
            assert not bad, (name, width, bad)
            page.screenshot(path=str(shots / f"failures-{name}-{width}.png"), full_page=True)

    # The failing field comes first, marked; corrected, it goes through to PassKit.
    first = page.locator("form.edit-form input[name^='field:']").first
    expect(first).to_have_attribute("name", "field:points")
    expect(first).to_have_attribute("aria-invalid", "true")
    page.get_by_label(re.compile("^Points")).fill("30")
    page.get_by_role("button", name="Send again").click()
    old = pages["delivery"].rsplit("/", 1)[1]
    expect(page).not_to_have_url(re.compile(rf"/{old}"))  # the new delivery's page…
    expect(page.locator(f"main a[href$='/deliveries/{old}']").first).to_be_visible()  # …links back
    page.screenshot(path=str(shots / f"failures-resent-{PHONE}.png"), full_page=True)
    [member] = state.members.values()
    assert member["externalId"] == "HS-4242" and member["points"] == 30

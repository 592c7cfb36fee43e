"""Small things of the console in a real browser (Debian's Chromium, skipped without it like
test_admin_browser.py): the chart's axis stays readable at 1280 and 375 px, a hook's page is
reached from the list, the copy buttons work where the browser has no clipboard API (plain http
from another host) and the tab has its icon. Every page's width and accessibility are checked
by the operator's afternoon (test_operator_afternoon.py)."""

from __future__ import annotations

import re

import httpx

from relay.sandbox import DEMO_PROGRAM_ID, State

from .test_admin_browser import PASSWORD, browser_page, on_this_server, relay_url

__all__ = ["browser_page", "relay_url"]  # the fixtures, used by name below
WIDE, PHONE = 1280, 375


def test_the_chart_reads_on_a_phone_and_copy_works_without_a_clipboard(
    browser_page: object, relay_url: str, sandbox: tuple[str, State]
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    state = sandbox[1]

    page.goto(f"{relay_url}/admin/login")
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Last 24 hours")).to_be_visible()

    # A hook, and one delivery through it, so every page has something to show.
    page.goto(f"{relay_url}/admin/hooks/new?template=member-upsert")
    page.get_by_label("Label").fill("Front desk sign-up form (iPad by the door)")
    page.get_by_label(re.compile("^Program")).select_option(DEMO_PROGRAM_ID)
    page.get_by_label(re.compile("^Tier")).select_option("base")
    page.get_by_role("button", name="Create the URL").click()
    expect(page).to_have_url(re.compile(r"/admin/hooks/hk_\w+\?minted=1$"))
    minted = page.locator("#minted-url").inner_text().strip()
    sent = httpx.post(
        on_this_server(minted, relay_url),
        data={"external_id": "CRM-7", "email": "sam@example.com", "first_name": "Samantha"},
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    assert len(state.members) == 1
    for width in (WIDE, PHONE):
        # The chart's axis text keeps a readable size however small the chart is drawn.
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{relay_url}/admin/")
        sizes = page.eval_on_selector_all(
            ".chart-box .axis", "all => all.map(e => parseFloat(getComputedStyle(e).fontSize))"
        )
        assert sizes and min(sizes) >= 11, (width, sizes)

    # The hook's page, reached from the list, shows the URL that was minted.
    page.goto(f"{relay_url}/admin/hooks")
    page.get_by_role("link", name="Front desk sign-up form (iPad by the door)").click()
    expect(page.locator("#minted-url")).to_have_text(minted)
    expect(page.locator("main")).to_contain_text("ok")  # its delivery

    # No clipboard API (as on plain http from another host): the URL lands in a selected field,
    # and the button's label comes back after about two seconds.
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.reload()
    button = page.locator('button[data-copy="minted-url"]')
    button.click()
    field = page.locator("textarea.copy-field")
    expect(field).to_have_value(minted)
    selected = page.evaluate(
        "document.activeElement.selectionEnd - document.activeElement.selectionStart"
    )
    assert selected == len(minted)
    expect(button).not_to_have_text("Copy URL")
    expect(button).to_have_text("Copy URL", timeout=4000)
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200

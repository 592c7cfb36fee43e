"""Every page an operator opens, in a real browser (Debian's Chromium, skipped without it like
test_admin_browser.py): none scrolls sideways on a 375 px phone, each is photographed at 1280
and 375 px into RELAY_SCREENSHOTS (else a temporary folder), and the copy buttons work where
the browser has no clipboard API (plain http from another host)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from relay.sandbox import DEMO_PROGRAM_ID, State

from .test_admin_browser import PASSWORD, browser_page, on_this_server, relay_url, shots

__all__ = ["browser_page", "relay_url", "shots"]  # the fixtures, used by name below
WIDE, PHONE = 1280, 375


def test_every_page_fits_a_phone_and_copies_without_a_clipboard(
    browser_page: object, relay_url: str, sandbox: tuple[str, State], shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    sandbox_url, state = sandbox

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
    hook_page = page.url.split("?")[0]
    minted = page.locator("#minted-url").inner_text().strip()
    sent = httpx.post(
        on_this_server(minted, relay_url),
        data={"external_id": "CRM-7", "email": "sam@example.com", "first_name": "Samantha"},
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    [member_id] = state.members
    page.goto(f"{relay_url}/admin/deliveries")
    delivery = page.locator("tbody a").first.get_attribute("href")
    assert delivery

    pages = {
        "overview": f"{relay_url}/admin/",
        "hooks": f"{relay_url}/admin/hooks",
        "hook": hook_page,
        "new-hook": f"{relay_url}/admin/hooks/new?template=member-upsert",
        "deliveries": f"{relay_url}/admin/deliveries",
        "delivery": relay_url + delivery,
        "templates": f"{relay_url}/admin/templates",
        "template": f"{relay_url}/admin/templates/member-enrol",
        "passkit": f"{relay_url}/admin/passkit",
        "public-hook-page": on_this_server(minted, relay_url),
        "sandbox-index": f"{sandbox_url}/",
        "sandbox-pass": f"{sandbox_url}/pass/{member_id}",
    }
    for width in (WIDE, PHONE):
        page.set_viewport_size({"width": width, "height": 800})
        for name, url in pages.items():
            answer = page.goto(url)
            assert answer is not None and answer.status == 200, (name, url)
            fits = page.evaluate("document.documentElement.scrollWidth <= innerWidth")
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert fits, f"{name} scrolls sideways at {width} px ({scroll} px wide)"
            page.screenshot(path=str(shots / f"page-{name}-{width}.png"), full_page=True)
        # The chart's axis text keeps a readable size however small the chart is drawn.
        page.goto(pages["overview"])
        sizes = page.eval_on_selector_all(
            ".chart-box .axis", "all => all.map(e => parseFloat(getComputedStyle(e).fontSize))"
        )
        assert sizes and min(sizes) >= 11, sizes

    # The hook's page, reached from the list, shows the URL that was minted.
    page.goto(pages["hooks"])
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

"""What every page a person opens must pass in the browser tests: it fits the window without
sideways scrolling, it has no serious or critical accessibility violation (axe-core through
axe-playwright-python), and it is photographed into the screenshots folder (docs/testing.md).
Failures name the page and list what is wrong, so a red test says what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERIOUS = ("serious", "critical")


def sized_page(browser_page: object, width: int, wait_ms: int = 10_000) -> Any:
    """The browser fixture's page, `width` px wide and 800 high, waiting at most `wait_ms` for
    anything it is asked to find."""
    from playwright.sync_api import Page

    assert isinstance(browser_page, Page)
    browser_page.set_viewport_size({"width": width, "height": 800})
    browser_page.set_default_timeout(wait_ms)
    return browser_page


def too_wide(page: Any) -> str:
    """Why `page` scrolls sideways ("" when it fits): its width, and the widest elements."""
    sizes = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    if sizes[0] <= sizes[1]:
        return ""
    culprits = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
            .slice(0, 5)
            .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                      + ' (' + Math.round(e.getBoundingClientRect().right) + ' px)')"""
    )
    return f"{sizes[0]} px wide in a {sizes[1]} px window; sticking out: {', '.join(culprits)}"


def serious_violations(page: Any) -> list[str]:
    """The serious and critical axe violations on `page`, one line each: id, impact, help and
    the elements concerned."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — at {[n['target'] for n in v['nodes']][:5]}"
        for v in found
        if v["impact"] in SERIOUS
    ]


class PageChecks:
    """Calling it with a page's name checks the page the browser shows now and photographs it
    as `{prefix}{name}.png`; `names` keeps what was checked, so a test can assert its tour."""

    def __init__(self, page: Any, shots: Path, prefix: str) -> None:
        self.page, self.shots, self.prefix = page, shots, prefix
        self.names: list[str] = []

    def __call__(self, name: str, *, accessibility: bool = True) -> None:
        width = self.page.viewport_size["width"]
        where = f"{name} ({self.page.url}) at {width} px"
        wide = too_wide(self.page)
        assert not wide, f"{where} scrolls sideways: {wide}"
        if accessibility:
            bad = serious_violations(self.page)
            assert not bad, f"{where} has serious accessibility violations:\n" + "\n".join(bad)
        self.page.screenshot(path=str(self.shots / f"{self.prefix}{name}.png"), full_page=True)
        self.names.append(name)


TAP = 44  # px: the smallest tap target on a phone (WCAG 2.5.5, Apple's and Android's guides)


def small_targets(page: Any, least: int = TAP) -> list[str]:
    """The visible tap targets smaller than `least` px either way, one line each. Links inside
    a sentence are excepted (as WCAG does: their size is the line's); a checkbox or radio counts
    as its label, which toggles it too."""
    return list(
        page.evaluate(
            """(least) => {
  const seen = [];
  const targets = document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary');
  for (const el of targets) {
    if (el.closest('details:not([open])') && el.tagName !== 'SUMMARY') continue;
    if (el.closest('[hidden]')) continue;
    let box = el;
    if (el.matches('input[type=checkbox], input[type=radio]') && el.closest('label'))
      box = el.closest('label');
    const r = box.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const style = getComputedStyle(box);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    if (el.tagName === 'A') {
      const block = el.parentElement;
      const own = el.textContent.trim(), around = block ? block.textContent.trim() : own;
      if (around.length > own.length && !el.classList.contains('button')
          && getComputedStyle(el).display === 'inline') continue;  // a link in a sentence
    }
    if (r.height < least - 0.5 || r.width < least - 0.5) {
      const name = (el.textContent || el.value || el.name || el.getAttribute('aria-label') || '')
        .trim().replace(/\\s+/g, ' ').slice(0, 30);
      const size = `${Math.round(r.width)}×${Math.round(r.height)}`;
      seen.push(`${el.tagName.toLowerCase()} "${name}" ${size}`);
    }
  }
  return seen;
}""",
            least,
        )
    )


class DayChecks(PageChecks):
    """PageChecks that also hold every tap target to 44 px on a phone-sized window."""

    def __call__(self, name: str, *, accessibility: bool = True) -> None:
        if self.page.viewport_size["width"] <= 480:
            small = small_targets(self.page)
            assert not small, f"{name} ({self.page.url}) has small tap targets: {small}"
        super().__call__(name, accessibility=accessibility)

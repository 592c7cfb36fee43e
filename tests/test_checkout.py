"""Stripe Checkout's success page, `GET /checkout/{CHECKOUT_SESSION_ID}`: the relay and the
PassKit sandbox as real servers, Stripe's events signed as Stripe signs them (relay.stripe.samples).

A customer who has paid lands on the page; it waits (and reloads itself) until the relay has
handled the session's `checkout.session.completed`, then shows their own pass: wallet buttons
and a QR code through the pass URL, and the program's name. The records behind it name nobody
in clear, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.sealing import Sealer
from relay.store import CheckoutRecord, Store, open_store
from relay.stripe.samples import post_sample, sample_event
from relay.web.checkout import BURST, MAX_TRIES, qr_svg

from .conftest import SECRET_KEY, make_settings, mint
from .page_checks import PageChecks
from .servers import relay_on_sandbox
from .test_admin_browser import browser_page, shots

__all__ = ["browser_page", "shots"]  # the fixtures, used by name below
WHSEC = "whsec_checkout_page_test_0123456789"
EMAIL, NAME = "lena.moreau@example.com", "Lena Moreau"
PROGRAM_NAME = "Sandbox Coffee Club"  # the sandbox's demo program
T0 = 1_800_000_000.0


def stripe_path() -> str:
    return "/stripe/" + mint("stripe", program_id=DEMO_PROGRAM_ID, tier_id="base").rsplit("/")[-1]


@pytest.fixture
def relay(sandbox: tuple[str, State], tmp_path: Path) -> Iterator[str]:
    with relay_on_sandbox(sandbox[0], tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC) as url:
        yield url


def checkout_event() -> tuple[dict[str, Any], str]:
    event = sample_event("checkout.session.completed", email=EMAIL, name=NAME)
    return event, event["data"]["object"]["id"]


def pay(relay: str, event: dict[str, Any]) -> dict[str, Any]:
    """Stripe delivering the event to the relay; the relay's answer."""
    answer = post_sample(relay + stripe_path(), WHSEC, event)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["ok"] is True and body["pass_url"], body
    return body


def links(html: str) -> list[tuple[str, str]]:
    return [(href, re.sub(r"<[^>]+>", "", text).strip()) for href, text in
            re.findall(r'<a class="wallet [a-z]+" href="([^"]+)">(.*?)</a>', html)]  # fmt: skip


# -- end to end ------------------------------------------------------------------------------


def test_after_checkout_the_page_shows_the_customers_pass(
    relay: str, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    event, session_id = checkout_event()
    answer = pay(relay, event)
    pass_url = answer["pass_url"]

    page = httpx.get(f"{relay}/checkout/{session_id}", timeout=10)
    assert page.status_code == 200
    assert "Your pass is ready" in page.text
    assert links(page.text) == [(pass_url, "Add to Apple Wallet"),
                                (pass_url, "Save to Google Wallet")]  # fmt: skip
    assert PROGRAM_NAME in page.text
    assert qr_svg(pass_url) in page.text  # the QR code holds the pass URL
    assert 'http-equiv="refresh"' not in page.text  # nothing left to wait for
    assert "<script>" not in page.text and page.headers["x-checkout-state"] == "pass"
    assert EMAIL not in page.text and NAME not in page.text  # beyond the pass: nothing personal
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    # The buttons lead to the member's own pass at PassKit (the sandbox's pass page).
    member = sandbox[1].members[answer["id"]]
    assert member["person"]["emailAddress"] == EMAIL
    assert httpx.get(pass_url, timeout=10).status_code == 200
    # On Android, Google Wallet's button comes first.
    android = {"User-Agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile"}
    page = httpx.get(f"{relay}/checkout/{session_id}", headers=android, timeout=10)
    google_first = ["Save to Google Wallet", "Add to Apple Wallet"]
    assert [text for _, text in links(page.text)] == google_first

    # The record behind the page: the blind index of the email, never the email or the name.
    with sqlite3.connect(tmp_path / "relay.db") as db:
        rows = db.execute("SELECT * FROM checkouts").fetchall()
    assert len(rows) == 1
    assert not any(EMAIL in str(v) or NAME in str(v) or "Lena" in str(v) for v in rows[0])
    blind = Sealer.from_secrets([SECRET_KEY]).blind(EMAIL)
    with sqlite3.connect(tmp_path / "relay.db") as db:
        kept = db.execute("SELECT person, program_name FROM checkouts").fetchone()
    assert kept == (blind, PROGRAM_NAME)  # the program's name is kept once PassKit told it


def test_the_page_opened_before_the_event_waits_then_shows_the_pass(relay: str) -> None:
    event, session_id = checkout_event()
    address = f"{relay}/checkout/{session_id}"

    waiting = httpx.get(address, timeout=10)
    assert waiting.status_code == 200
    assert "Preparing your pass" in waiting.text
    assert "waiting for the confirmation of your payment" in waiting.text
    assert waiting.headers["x-checkout-state"] == "waiting"
    # Without JavaScript it reloads itself; with it, it asks every 3 s in the background.
    reload = '<noscript><meta http-equiv="refresh" content="3; url=?try=1"></noscript>'
    assert reload in waiting.text
    assert "setTimeout(look, 3000)" in waiting.text
    assert links(waiting.text) == [] and "<svg" not in waiting.text
    # The reloads count up; after about two minutes the page stops and says what to do.
    assert 'url=?try=8"' in httpx.get(address + "?try=7", timeout=10).text
    late = httpx.get(f"{address}?try={MAX_TRIES}", timeout=10)
    assert late.status_code == 200
    assert "taking longer than usual" in late.text and "contact the business you paid" in late.text
    assert 'http-equiv="refresh"' not in late.text and "<script>" not in late.text

    answer = pay(relay, event)
    shown = httpx.get(address + "?try=5", timeout=10)  # the next reload
    assert "Your pass is ready" in shown.text
    assert links(shown.text)[0] == (answer["pass_url"], "Add to Apple Wallet")
    # Stripe sending the event again changes nothing on the page.
    again = post_sample(relay + stripe_path(), WHSEC, event)
    assert again.status_code == 200
    assert httpx.get(address, timeout=10).text == shown.text


def test_an_unknown_session_shows_no_pass(relay: str) -> None:
    pay(relay, checkout_event()[0])  # someone else's pass exists
    unknown = httpx.get(f"{relay}/checkout/cs_test_NoSuchSession0000000000", timeout=10)
    assert unknown.status_code == 200 and "Preparing your pass" in unknown.text
    assert links(unknown.text) == [] and "<svg" not in unknown.text
    for wrong in ("in_1Abc2345678", "cs_", "cs_x%27%20OR%201=1", "%3Cscript%3E"):
        answer = httpx.get(f"{relay}/checkout/{wrong}", timeout=10)
        assert answer.status_code == 404, wrong
        assert "No pass at this address" in answer.text and "<script>" not in answer.text
        assert links(answer.text) == [] and 'http-equiv="refresh"' not in answer.text


def test_an_unpaid_session_records_no_pass(relay: str) -> None:
    event, session_id = checkout_event()
    event["data"]["object"]["payment_status"] = "unpaid"
    answer = post_sample(relay + stripe_path(), WHSEC, event)
    assert answer.json()["skipped"] is True
    assert "Preparing your pass" in httpx.get(f"{relay}/checkout/{session_id}", timeout=10).text


def test_too_many_tries_from_one_address_get_a_429_page(relay: str) -> None:
    event, session_id = checkout_event()
    pay(relay, event)
    with httpx.Client(base_url=relay, timeout=10) as client:
        statuses = [client.get(f"/checkout/{session_id}").status_code for _ in range(int(BURST))]
        assert statuses == [200] * int(BURST)
        refused = client.get(f"/checkout/{session_id}")
        wrong = client.get("/checkout/not-a-session")  # wrong-looking ids count too
    assert refused.status_code == 429 and wrong.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "Too many tries from your connection" in refused.text
    assert links(refused.text) == []


class CountingStore:
    """A real store that counts the checkout look-ups made through it."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.reads = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        self.reads += 1
        return await self.inner.get_checkout(session_id)


@pytest.mark.anyio
async def test_a_wrong_looking_id_never_reaches_the_database(tmp_path: Path) -> None:
    from relay.app import create_app

    inner = await open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    counting = CountingStore(inner)
    app = create_app(make_settings(), store=counting)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="https://relay.example.com") as client:  # fmt: skip
            for wrong in ("not-a-session", "in_1Abc2345678", "cs_a", "cs_x'--"):
                assert (await client.get(f"/checkout/{wrong}")).status_code == 404
            assert counting.reads == 0
            assert (await client.get("/checkout/cs_test_a1B2c3D4e5")).status_code == 200
            assert counting.reads == 1
    finally:
        await inner.close()


# -- the store, both backends ------------------------------------------------------------------


@pytest.fixture
async def both_stores(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def record(session_id: str, person: str | None, **changes: Any) -> CheckoutRecord:
    fields: dict[str, Any] = {"session_id": session_id, "hook_id": "hk_a", "pass_id": "p1",
                              "pass_url": "https://pub1.pskt.io/p1", "program_id": "prog",
                              "program_name": None, "person": person, "created_at": T0}  # fmt: skip
    return CheckoutRecord(**{**fields, **changes})


@pytest.mark.anyio
async def test_checkout_records_are_saved_updated_and_erased_by_person(
    both_stores: Store,
) -> None:
    store = both_stores
    sealer = Sealer.from_secrets(["first-secret-key-0123456789abcdef"])
    ana, bo = sealer.blind("ana@example.com"), sealer.blind("bo@example.com")
    await store.save_checkout(record("cs_1", ana))
    await store.save_checkout(record("cs_2", ana, pass_id="p2"))
    await store.save_checkout(record("cs_3", bo, created_at=T0 + 100))
    await store.save_checkout(record("cs_4", None))
    assert await store.get_checkout("cs_1") == record("cs_1", ana)
    assert await store.get_checkout("cs_none") is None
    # The same event again (or a replay) brings the row up to date; a known name stays.
    await store.save_checkout(record("cs_1", ana, program_name="Gym Club"))
    await store.save_checkout(record("cs_1", ana, pass_id="p9"))
    assert await store.get_checkout("cs_1") == record("cs_1", ana, pass_id="p9",
                                                      program_name="Gym Club")  # fmt: skip

    assert await store.erase_checkouts([ana, "not-anyones"]) == 2
    assert await store.get_checkout("cs_1") is None and await store.get_checkout("cs_2") is None
    assert await store.get_checkout("cs_3") is not None
    assert await store.erase_checkouts([ana]) == 0  # erasing twice: nothing left
    assert await store.erase_checkouts([]) == 0

    assert await store.purge_checkouts(T0 + 50) == 1  # cs_4; cs_3 is newer
    assert await store.get_checkout("cs_3") is not None


# -- in Chromium at a phone's width ----------------------------------------------------------


def test_the_page_on_a_phone_waits_then_shows_the_pass(
    browser_page: object, relay: str, shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    page.set_viewport_size({"width": 375, "height": 740})
    check = PageChecks(page, shots, "checkout-375-")
    event, session_id = checkout_event()

    page.goto(f"{relay}/checkout/{session_id}")
    expect(page.get_by_role("heading", name="Preparing your pass")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("checks again by itself")
    check("waiting")

    answer = pay(relay, event)
    # The page reloads itself within a few seconds and shows the pass.
    expect(page.get_by_role("heading", name="Your pass is ready")).to_be_visible(timeout=10_000)
    apple = page.get_by_role("link", name="Add to Apple Wallet")
    expect(apple).to_have_attribute("href", answer["pass_url"])
    expect(page.get_by_role("link", name="Save to Google Wallet")).to_be_visible()
    expect(page.get_by_text(PROGRAM_NAME)).to_be_visible()
    qr = page.get_by_role("img", name=re.compile("QR code of your pass"))
    box = qr.bounding_box()
    assert box is not None and 150 <= box["width"] <= 375, box  # big enough to scan, no wider
    button = apple.bounding_box()
    assert button is not None and button["height"] >= 44  # a thumb's target
    check("pass")

    page.goto(f"{relay}/checkout/not-a-session")
    expect(page.get_by_role("heading", name="No pass at this address")).to_be_visible()
    check("unknown")
    assert check.names == ["waiting", "pass", "unknown"]

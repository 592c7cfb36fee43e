"""Every delivery in one sentence (relay.admin.sentences), read from the records real deliveries
leave: the relay calling the PassKit sandbox over HTTP, every template and Stripe event, each
outcome; then the console's list, overview and delivery page showing them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.admin.sentences import OUTCOME_WORDS, Lexicon, describe
from relay.app import create_app
from relay.delivery.services import Services
from relay.passkit.account import load_account
from relay.passkit.operations import CATALOG
from relay.redact import MASK
from relay.sandbox import (
    DEMO_CAMPAIGN_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    State,
)
from relay.store import DeliveryRecord, HookRecord
from relay.ui.fixes import failure_of

from .conftest import make_settings, mint
from .test_admin import PASSWORD, sign_in
from .test_stripe import WHSEC, sample, signed

pytestmark = pytest.mark.anyio

P = {"program_id": DEMO_PROGRAM_ID}
MEMBER = {**P, "tier_id": "base"}
COUPON = {"campaign_id": DEMO_CAMPAIGN_ID, "offer_id": DEMO_OFFER_ID}
TICKET = {"production_id": DEMO_PRODUCTION_ID, "venue_id": DEMO_VENUE_ID,
          "ticket_type_id": DEMO_TICKET_TYPE_ID}  # fmt: skip
MARA = {"external_id": "HS-4242", "first_name": "Mara", "last_name": "Quist",
        "email": "mara@example.com"}  # fmt: skip
ANA = {"first_name": "Ana", "last_name": "Díaz", "email": "ana@example.com"}
STRIPE_ENDPOINT = "/stripe/" + mint("stripe", hook_id="hk_stripe00001", **MEMBER).rsplit("/")[-1]

# (template, hook settings, fields sent, the sentence its delivery reads as), in order.
HOOK_DELIVERIES: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("member-enrol", MEMBER, {**MARA, "points": "30"},
     "Enrolled Mara Quist (HS-4242) in Base with 30 points"),
    ("member-enrol", MEMBER, {**MARA, "points": "30"},  # PassKit has it: ours, answered again
     "Already enrolled: Mara Quist (HS-4242) in Base with 30 points"),
    ("member-upsert", MEMBER, {"external_id": "HS-4242", "email": "mara@example.com",
                               "points": "40"},
     "Updated mara@example.com (HS-4242): 40 points"),
    ("member-upsert", MEMBER, {"external_id": "HS-77", "email": "sam@example.com",
                               "tier": "silver"},
     "Enrolled sam@example.com (HS-77) in Silver"),
    ("member-points-earn", P, {"external_id": "HS-4242", "points": "20"},
     "Added 20 points to HS-4242"),
    ("member-points-burn", P, {"external_id": "HS-4242", "points": "1"},
     "Took 1 point from HS-4242"),
    ("member-points-set", P, {"external_id": "HS-4242", "points": "100"},
     "Set the points of HS-4242 to 100"),
    ("member-tier-change", P, {"external_id": "HS-4242", "tier": "Gold"},
     "Moved Mara Quist (HS-4242) to Gold"),
    ("member-check-in", P, {"external_id": "HS-4242", "location": "Soho"},
     "Checked in Mara Quist (HS-4242) at Soho"),
    ("member-check-out", P, {"external_id": "HS-4242"}, "Checked out Mara Quist (HS-4242)"),
    ("member-update", P, {"external_id": "HS-4242", "first_name": "Mara",
                          "last_name": "Quist-Berg"},
     "Updated Mara Quist-Berg (HS-4242)"),
    ("member-lookup", P, {"external_id": "HS-4242"}, "Looked up Mara Quist-Berg (HS-4242)"),
    ("member-expiry-update", P, {"external_id": "HS-4242", "expiry": "2027-12-31"},
     "Set the expiry of HS-4242 to 2027-12-31"),
    ("member-find", P, {"email": MARA["email"]}, "Looked up Mara Quist-Berg (HS-4242)"),
    ("pass-email", P, {"external_id": "HS-4242"}, "Emailed HS-4242 their pass link"),
    ("coupon-issue", COUPON, {"external_id": "WELCOME-1", **ANA},
     "Issued coupon WELCOME-1 (10% off your next order) to Ana Díaz"),
    ("coupon-redeem", COUPON, {"external_id": "WELCOME-1"}, "Redeemed coupon WELCOME-1"),
    ("coupon-lookup", COUPON, {"external_id": "WELCOME-1"}, "Looked up coupon WELCOME-1"),
    ("coupon-issue", COUPON, {"external_id": "WELCOME-2"},
     "Issued coupon WELCOME-2 (10% off your next order)"),
    ("coupon-void", COUPON, {"external_id": "WELCOME-2"}, "Voided coupon WELCOME-2"),
    ("ticket-issue", TICKET, {"ticket_number": "T-1", "event_start": "2026-12-01 19:00", **ANA},
     "Issued ticket T-1 (General Admission) to Ana Díaz"),
    ("ticket-redeem", TICKET, {"ticket_number": "T-1"}, "Redeemed ticket T-1"),
    ("ticket-lookup", TICKET, {"ticket_number": "T-1"}, "Looked up ticket T-1"),
    ("member-delete", P, {"external_id": "HS-4242"}, "Deleted HS-4242 and their pass"),
    # Other outcomes.
    ("member-upsert", MEMBER, {"external_id": "HS-9", "email": "kim@example.com",
                               "dry_run": "1"},
     "Dry run: would enrol or update kim@example.com (HS-9)"),
    ("member-points-earn", P, {"external_id": "HS-77", "points": "0"},
     "Skipped: 0 points: nothing to add, so nothing was sent to PassKit (a purchase worth 0 "
     "points is not an error)"),
    ("member-points-earn", P, {"external_id": "HS-77", "points": "5",
                               "idempotency_key": "zap-run-1"},
     "Added 5 points to HS-77"),
    ("member-points-earn", P, {"external_id": "HS-77", "points": "5",
                               "idempotency_key": "zap-run-1"},
     "Already added: 5 points to HS-77"),
]  # fmt: skip
# (Stripe sample, its event id and customer if changed, the sentence it reads as), in order.
GONE = {"evt_1SubDeletedNew01": "evt_1SubDeletedGone1", "cus_RqW8xZ1aB2": "cus_NeverIssued1"}
STRIPE_DELIVERIES: list[tuple[str, dict[str, str], str]] = [
    ("checkout.session.completed", {},
     "Enrolled Ana Díaz (cus_RqW8xZ1aB2) in Base after a Stripe checkout"),
    ("invoice.paid", {}, "Updated Ana Díaz (cus_RqW8xZ1aB2) after a paid Stripe invoice"),
    ("customer.subscription.updated", {},
     "Moved Ana Díaz (cus_RqW8xZ1aB2) to Gold after a Stripe plan change"),
    ("invoice.payment_failed", {},
     "Marked Ana Díaz (cus_RqW8xZ1aB2) as past due after a failed Stripe payment"),
    ("customer.subscription.deleted", {},
     "Deleted cus_RqW8xZ1aB2 and their pass as their Stripe subscription ended"),
    ("customer.subscription.deleted", {},  # Stripe sends the same event again
     "Already deleted: cus_RqW8xZ1aB2 and their pass"),
    ("customer.subscription.deleted", GONE,
     "Ignored Stripe event customer.subscription.deleted: cus_NeverIssued1 is not in PassKit, "
     "so there was nothing to delete"),
    ("customer.created", {},
     "Ignored Stripe event customer.created: this relay has no template for it"),
]  # fmt: skip


def hook_of(template: str) -> str:
    """One hook per template (an idempotency key is kept per hook)."""
    return f"hk_{template.replace('-', '')[:12]:_<12}"


async def relay_on(
    sandbox_url: str, folder: Path, **env: str
) -> tuple[httpx.AsyncClient, Services]:
    app = create_app(make_settings(
        PASSKIT_API_URL=sandbox_url, PASSKIT_PASS_URL=f"{sandbox_url}/pass",
        DATABASE_URL=f"sqlite:///{folder / 'relay.db'}", STRIPE_WEBHOOK_SECRET=WHSEC,
        RELAY_ADMIN_PASSWORD=PASSWORD, **env))  # fmt: skip
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="https://relay.example.com", timeout=30)  # fmt: skip
    return client, app.state.services


@pytest.fixture
async def delivered(
    sandbox: tuple[str, State], tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Services, list[DeliveryRecord]]]:
    """A relay on the sandbox that has made every delivery above; its records, oldest first."""
    client, services = await relay_on(sandbox[0], tmp_path)
    for template, params, fields, _ in HOOK_DELIVERIES:
        answer = await client.post(mint(template, hook_of(template), **params), data=fields)
        assert answer.status_code == 200, (template, answer.text)
    for name, changes, _ in STRIPE_DELIVERIES:
        body = sample(name)
        for old, new in changes.items():
            body = body.replace(old.encode(), new.encode())
        answer = await client.post(STRIPE_ENDPOINT, content=body, headers=signed(body))
        assert answer.status_code == 200, (name, answer.text)
    store = await services.store.get()
    records = list(reversed(await store.list_deliveries(limit=100)))
    yield client, services, records
    await client.aclose()
    await services.aclose()


async def test_each_delivery_reads_as_what_it_did_to_whom(
    delivered: tuple[httpx.AsyncClient, Services, list[DeliveryRecord]],
) -> None:
    _, services, records = delivered
    words = Lexicon.of(await load_account(services.client), services.library)
    expected = [said for *_, said in HOOK_DELIVERIES] + [said for *_, said in STRIPE_DELIVERIES]
    params = [p for _, p, _, _ in HOOK_DELIVERIES] + [MEMBER] * len(STRIPE_DELIVERIES)
    said = [describe(r, words, p).text for r, p in zip(records, params, strict=True)]
    assert said == expected
    outcomes = {r.outcome for r in records}
    assert outcomes == set(OUTCOME_WORDS) - {"failed"}
    # Every operation a template performs was delivered above.
    used = {t.operation.name for t in services.library.templates.values()}
    assert used <= {r.operation for r in records}


def logged(operation: str, outcome: str = "ok", **parts: Any) -> DeliveryRecord:
    return DeliveryRecord(at=1.8e9, source="hook", hook_id="hk_1", template="", status=200,
                          operation=operation, outcome=outcome, latency_ms=1.0,
                          request_id="req_1", **parts)  # fmt: skip


def test_the_lookups_no_template_performs_read_as_words_too() -> None:
    """coupons.lookup and tickets.lookup only find what a create made (no template performs
    them), so no delivery above logs one: their sentences from records shaped as logged."""
    coupon = logged("coupons.lookup", request={"external_id": "WELCOME-1"},
                    passkit_request={"method": "GET", "path": "/coupon/…", "json": None},
                    passkit_response={"status": 200, "json": {"id": "c1",
                                      "externalId": "WELCOME-1"}})  # fmt: skip
    assert describe(coupon).text == "Looked up coupon WELCOME-1"
    ticket = logged("tickets.lookup", request={"ticket_number": "T-9"})
    assert describe(ticket).text == "Looked up ticket T-9"
    for name in CATALOG:  # none falls through to the catch-all
        assert not describe(logged(name)).text.startswith("Handled"), name


async def test_without_payloads_the_sentence_says_what_it_can(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    client, services = await relay_on(sandbox[0], tmp_path, RELAY_LOG_PAYLOADS="off")
    try:
        enrol = mint("member-enrol", hook_of("member-enrol"), **MEMBER)
        assert (await client.post(enrol, data={**MARA, "points": "30"})).status_code == 200
        assert (await client.post(enrol, data={"external_id": "HS-5"})).status_code == 422
        store = await services.store.get()
        failed, ok = await store.list_deliveries()
        assert ok.request is None and ok.passkit_request is None  # nothing personal kept
        words = Lexicon.of(await load_account(services.client), services.library)
        assert describe(ok, words, MEMBER).text == "Enrolled a member in Base"
        assert describe(ok, words).text == "Enrolled a member"  # the hook's settings unknown
        said = describe(failed, words, MEMBER)
        failure = failure_of(failed)
        assert failure is not None and said.text.startswith(f"Not sent: {failure.cause}")
        assert said.detail == "Tried to enrol a member in Base"
        await store.add_hook(HookRecord(hook_of("member-enrol"), "member-enrol", MEMBER,
                                        label="Front desk iPad"))  # fmt: skip
        await sign_in(client)
        page = text_of((await client.get(f"/admin/deliveries/{ok.id}")).text)
        assert "Enrolled a member in Base" in page and "Front desk iPad" in page
        assert "RELAY_LOG_PAYLOADS is off" in page and "Mara" not in page
    finally:
        await client.aclose()
        await services.aclose()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_a_failure_says_its_cause_and_what_was_tried(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    client, services = await relay_on(sandbox[0], tmp_path)
    try:
        enrol = mint("member-enrol", hook_of("member-enrol"), **MEMBER)
        missing = {"external_id": "HS-5", "first_name": "Mara", "last_name": "Quist"}
        assert (await client.post(enrol, data=missing)).status_code == 422
        [failed] = await (await services.store.get()).list_deliveries()
        failure = failure_of(failed)
        assert failure is not None
        said = describe(failed, Lexicon.of(None, services.library), MEMBER)  # ids: no names
        # The cause alone (a heading, a row, a tab title); the fix is said on its page.
        assert said.text == f"Not sent: {failure.cause}"
        assert said.detail == "Tried to enrol Mara Quist (HS-5) in base"
    finally:
        await client.aclose()
        await services.aclose()


async def test_the_console_lists_and_shows_deliveries_in_words(
    delivered: tuple[httpx.AsyncClient, Services, list[DeliveryRecord]], sandbox: tuple[str, State]
) -> None:
    client, services, records = delivered
    store = await services.store.get()
    enrol_hook = hook_of("member-enrol")
    await store.add_hook(HookRecord(enrol_hook, "member-enrol", MEMBER, label="Front desk iPad"))
    secret = {"external_id": "HS-88", "email": "lee@example.com", "meta_note": "sk_live_4eC39Hq"}
    upsert = mint("member-upsert", hook_of("member-upsert"), **MEMBER)
    assert (await client.post(upsert, data=secret)).status_code == 200
    assert (await client.post(upsert, data={"external_id": "HS-89"})).status_code == 422
    await sign_in(client)

    listing = (await client.get("/admin/deliveries")).text
    text = text_of(listing)
    assert "Enrolled Mara Quist (HS-4242) in Base with 30 points" in text  # PassKit's names
    assert "Front desk iPad" in text and "Not sent:" in text
    badges = dict(re.findall(r'<span class="badge (\w+)">([^<]+)</span>', listing))
    assert badges == {
        "ok": "Succeeded",
        "failed": "Failed",
        "dry_run": "Dry run",
        "duplicate": "Already done",
        "skipped": "Skipped",
        "ignored": "Ignored",
    }
    assert '<option value="duplicate" >Already done</option>' in listing
    assert f'<small class="muted">{enrol_hook}</small>' in listing  # the id: small print only
    only_failed = text_of((await client.get("/admin/deliveries?outcome=failed")).text)
    assert "Not sent:" in only_failed and "Enrolled" not in only_failed

    first = records[0]
    page = (await client.get(f"/admin/deliveries/{first.id}")).text
    assert "<h1>Enrolled Mara Quist (HS-4242) in Base with 30 points</h1>" in page
    member_id = first.passkit_response["json"]["id"]
    card = f"{sandbox[0]}/pass/{member_id}"
    assert f'href="{card}"' in page and ">Open the pass</a>" in page
    assert f'<iframe class="pass-card" src="{card}"' in page  # the sandbox's card
    assert "Check the pass" in page
    words = text_of(page)
    technical = words.index("Technical details")
    for detail in (first.id, first.request_id, enrol_hook, "members.enrol", "/members/member"):
        assert words.index(detail) > technical, detail  # ids, codes and JSON folded away
    assert re.search(r"<details class=\"technical\">\s*<summary>Technical details", page)
    assert "Personal data (names, emails, phone numbers) is kept" in text_of(page)

    [masked] = [r for r in await store.list_deliveries(outcome="ok", limit=1)]
    page = (await client.get(f"/admin/deliveries/{masked.id}")).text
    assert "sk_live_4eC39Hq" not in page
    assert f'<mark class="masked" title="hidden by the relay">{MASK}</mark>' in page
    assert "On this delivery 2 values were hidden." in text_of(page)  # what arrived and sent

    overview = (await client.get("/admin/")).text
    assert "Not sent:" in text_of(overview)
    assert "Tried to enrol or update HS-89" in text_of(overview)
    assert 'href="/admin/failures"' in overview

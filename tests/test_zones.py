"""Issue 19's time-zone defaults, through a real `relay serve` against the PassKit sandbox: a hook
minted without `timezone` takes its venue's, tier's or campaign's zone from the account (or its
country's single zone) at minting, stores it in its settings, and is refused when none is found;
its answer shows times in that zone."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from relay.access.tokens import Hook, HookSigner
from relay.sandbox import (
    DEMO_CAMPAIGN_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    SandboxConfig,
    State,
    create_sandbox,
)
from relay.store import HookRecord, open_store

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, SECRET_KEY
from .processes import ServerProcess
from .servers import relay_process, serve_in_thread
from .test_admin import PASSWORD, token_in
from .test_admin_sessions import get, post, sign_in

NEW_YORK_VENUE = "ZonesVenueNewYork00001"
UTC_VENUE = "ZonesVenueUtc000000001"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, State]]:
    app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    state: State = app.state.sandbox
    state.create_venue({"name": "Broadway Hall", "timezone": "America/New_York"}, NEW_YORK_VENUE)
    state.create_venue({"name": "Nowhere Hall", "timezone": "Etc/UTC"}, UTC_VENUE)
    state.tiers[(DEMO_PROGRAM_ID, "base")]["timezone"] = "Europe/Paris"
    with serve_in_thread(app) as url:
        yield url, state


@pytest.fixture(scope="module")
def relay(
    sandbox: tuple[str, State], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("relay")
    env = {"PASSKIT_API_URL": sandbox[0], "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
           "RELAY_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    process = relay_process(env, folder / "relay.log").start()
    try:
        yield process
    finally:
        process.stop()


def relay_url(
    relay: ServerProcess, template: str, **params: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "relay", "url", template]
    for name, value in params.items():
        argv += ["--param", f"{name}={value}"]
    return subprocess.run(argv, env=relay.env, capture_output=True, text=True, timeout=60)


def minted_path(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return "/hooks/" + done.stdout.strip().splitlines()[-1].rsplit("/hooks/", 1)[1]


def send(relay: ServerProcess, path: str, **fields: Any) -> httpx.Response:
    return httpx.post(relay.url + path, json=fields, timeout=30)


def show_day() -> datetime:
    # PassKit issues tickets for events within 90 days: the show is 20 days ahead.
    day = (datetime.now(UTC) + timedelta(days=20)).date()
    return datetime.combine(day, time(19, 30), ZoneInfo("America/New_York"))


def test_a_ticket_hook_minted_without_timezone_takes_its_new_york_venues_zone(
    relay: ServerProcess, sandbox: tuple[str, State]
) -> None:
    cookie = sign_in(relay.url)
    form = get(relay.url, "/admin/hooks/new?template=ticket-issue", cookie)
    assert '<option value="America/New_York"' in form.text  # the zones are a list to choose from
    minted = post(relay.url, "/admin/hooks/new", cookie, {
        "csrf": token_in(form.text), "template": "ticket-issue", "label": "Broadway shows",
        "param:production_id": DEMO_PRODUCTION_ID, "param:venue_id": NEW_YORK_VENUE,
        "param:ticket_type_id": DEMO_TICKET_TYPE_ID})  # fmt: skip
    assert minted.status_code == 303, minted.text
    page = get(relay.url, minted.headers["location"], cookie).text
    assert "America/New_York" in page  # stored in the hook's settings, shown with them
    found = re.search(r'id="minted-url">[^<]*(/hooks/[^<]+)<', page)
    assert found, page[:2000]
    local = show_day()
    expected = local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert expected.startswith((local.date() + timedelta(days=1)).isoformat())  # 00:30Z
    assert expected.endswith("T00:30:00Z") or expected.endswith("T23:30:00Z")  # EDT or EST
    answer = send(relay, found.group(1), ticket_number="T-ZONE-1", email="ana@example.com",
                  event_start=f"{local.date()} 19:30")  # fmt: skip
    assert answer.status_code == 200, answer.text
    starts = {e["scheduledStartDate"] for e in sandbox[1].events.values()}
    assert expected in starts
    # The answer and the delivery's sentence show the time on New York's clocks, not UTC's.
    shown = answer.json()["local_times"]
    assert answer.json()["timezone"] == "America/New_York"
    assert list(shown.values()) == [local.isoformat()], shown  # 19:30-05:00 (or -04:00)
    listing = get(relay.url, "/admin/deliveries", cookie).text
    words = f"{local.day} {local:%B %Y}, 19:30 New York time"
    assert "Issued ticket T-ZONE-1" in listing and words in listing, listing[-3000:]


def test_relay_url_stores_the_venues_zone_in_the_hooks_settings(relay: ServerProcess) -> None:
    done = relay_url(relay, "ticket-issue", production_id=DEMO_PRODUCTION_ID,
                     venue_id=NEW_YORK_VENUE, ticket_type_id=DEMO_TICKET_TYPE_ID)  # fmt: skip
    path = minted_path(done)
    checked = httpx.get(relay.url + path, timeout=30)  # the hook's public page lists settings
    assert checked.status_code == 200
    assert "America/New_York" in checked.text


def test_a_member_hook_takes_its_programs_zone(
    relay: ServerProcess, sandbox: tuple[str, State]
) -> None:
    path = minted_path(relay_url(relay, "member-enrol", program_id=DEMO_PROGRAM_ID,
                                 tier_id="base"))  # fmt: skip
    answer = send(relay, path, external_id="CRM-ZONE-1", email="zone@example.com",
                  first_name="Ana", expiry="2026-12-31 10:00")  # fmt: skip
    assert answer.status_code == 200, answer.text
    member = sandbox[1].members[answer.json()["id"]]
    assert member["expiryDate"] == "2026-12-31T09:00:00Z"  # 10:00 in Paris (CET, +1)


def test_a_coupon_hook_takes_its_campaigns_zone(
    relay: ServerProcess, sandbox: tuple[str, State]
) -> None:
    sandbox[1].campaigns[DEMO_CAMPAIGN_ID]["ianaTimezone"] = "Asia/Tokyo"
    try:
        done = relay_url(relay, "coupon-issue", campaign_id=DEMO_CAMPAIGN_ID,
                         offer_id=DEMO_OFFER_ID)  # fmt: skip
    finally:
        del sandbox[1].campaigns[DEMO_CAMPAIGN_ID]["ianaTimezone"]
    assert "Asia/Tokyo" in httpx.get(relay.url + minted_path(done), timeout=30).text


def test_a_country_with_one_zone_is_the_default_and_none_found_is_refused(
    relay: ServerProcess,
) -> None:
    tickets = {"production_id": DEMO_PRODUCTION_ID, "venue_id": UTC_VENUE,
               "ticket_type_id": DEMO_TICKET_TYPE_ID}  # fmt: skip
    refused = relay_url(relay, "ticket-issue", **tickets)
    assert refused.returncode == 1
    assert "timezone is needed: choose the time zone" in refused.stderr
    assert "the venue has no time zone but UTC in PassKit" in refused.stderr
    several = relay_url(relay, "ticket-issue", **tickets, country="US")
    assert several.returncode == 1 and "United States has" in several.stderr
    british = minted_path(relay_url(relay, "ticket-issue", **tickets, country="GB"))
    assert "Europe/London" in httpx.get(relay.url + british, timeout=30).text
    cookie = sign_in(relay.url)
    form = get(relay.url, "/admin/hooks/new?template=ticket-issue", cookie)
    page = post(relay.url, "/admin/hooks/new", cookie, {
        "csrf": token_in(form.text), "template": "ticket-issue", "label": "Nowhere",
        **{f"param:{k}": v for k, v in tickets.items()}})  # fmt: skip
    assert page.status_code == 422
    assert "choose the time zone where the times your app sends happen" in page.text
    assert '<option value="Europe/London"' in page.text


def register(relay: ServerProcess, record: HookRecord) -> None:
    """A hook in the relay's registry as one minted before v2 was registered."""

    async def add() -> None:
        store = await open_store(relay.env["DATABASE_URL"])
        try:
            await store.add_hook(record)
        finally:
            await store.close()

    asyncio.run(add())


def test_an_old_hooks_page_remints_it_with_todays_behaviour_saying_what_changes(
    relay: ServerProcess, sandbox: tuple[str, State]
) -> None:
    params = {"program_id": DEMO_PROGRAM_ID}
    register(relay, HookRecord("hk_oldearn0001", "member-points-earn", params, "Till points", 1.0))
    cookie = sign_in(relay.url)
    page = get(relay.url, "/admin/hooks/hk_oldearn0001", cookie).text
    changes = re.search(r'<ul id="remint-changes">(.*?)</ul>', page, re.S)
    assert changes, page[-3000:]
    said = changes.group(1)
    assert "misspelt field name" in said and "10,20 is refused" in said
    assert "The same order sent twice counts once" in said
    assert "found: false" not in said and "offset" not in said  # not a search, no times
    assert "Make a new URL with today's behaviour</button>" in page
    form = {"csrf": token_in(page)}
    refused = post(relay.url, "/admin/hooks/hk_oldearn0001/remint", cookie, form)
    assert refused.status_code == 303  # no key_field chosen: back to the page, saying so
    again = get(relay.url, refused.headers["location"], cookie).text
    assert "what identifies one purchase, visit or order in your app?" in again
    made = post(relay.url, "/admin/hooks/hk_oldearn0001/remint", cookie,
                {**form, "key_field": "order_id"})  # fmt: skip
    assert made.status_code == 303 and "remint=" not in made.headers["location"]
    new_page = get(relay.url, made.headers["location"], cookie).text
    assert "behaviour: paste it into your zap" in new_page
    found = re.search(r'id="minted-url">[^<]*/hooks/([^<]+)<', new_page)
    assert found
    hook = HookSigner([SECRET_KEY]).verify(found.group(1))
    assert dict(hook.params) == {**params, "key_field": "order_id", "v": "2"}
    assert hook.version == 2 and "remint-changes" not in new_page
    assert "· Till points" in new_page  # the same label
    listing = get(relay.url, "/admin/hooks", cookie).text
    assert "Till points (old)" in listing  # the old one keeps working, renamed
    old = old_path("hk_oldearn0001", "member-points-earn", params)
    enrolled = send(relay, minted_path(relay_url(relay, "member-enrol", program_id=DEMO_PROGRAM_ID,
                                                 tier_id="base")),
                    external_id="CRM-OLD-1", email="old@example.com")  # fmt: skip
    assert enrolled.status_code == 200, enrolled.text
    assert send(relay, old, external_id="CRM-OLD-1", points="5").status_code == 200


def old_path(hook_id: str, template: str, params: dict[str, str]) -> str:
    return "/hooks/" + HookSigner([SECRET_KEY]).mint(Hook(hook_id, template, params))


def test_an_import_counts_an_order_once_by_the_hooks_key_field(
    relay: ServerProcess, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    enrolling = minted_path(relay_url(relay, "member-enrol", program_id=DEMO_PROGRAM_ID,
                                      tier_id="base"))  # fmt: skip
    made = send(relay, enrolling, external_id="CRM-IMP-1", email="imp@example.com")
    assert made.status_code == 200, made.text
    earning = minted_path(relay_url(relay, "member-points-earn", program_id=DEMO_PROGRAM_ID,
                                    key_field="order_id"))  # fmt: skip
    live = send(relay, earning, external_id="CRM-IMP-1", order_id="O-77", points="5",
                status="paid")  # fmt: skip
    assert live.status_code == 200, live.text
    orders = tmp_path / "orders.csv"
    orders.write_text("external_id,order_id,points,status\n"
                      "CRM-IMP-1,O-77,5,paid\nCRM-IMP-1,O-78,3,paid\n")  # fmt: skip
    argv = [sys.executable, "-m", "relay", "import", str(orders), "--hook", relay.url + earning]
    env = {**relay.env, "PASSKIT_RATE_LIMIT": "off"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    member = sandbox[1].members[made.json()["id"]]
    assert member["points"] == 8  # O-77 was counted live: the import adds O-78 only
    # A re-export, rows reordered: nothing counts twice.
    orders.write_text("external_id,order_id,points,status\n"
                      "CRM-IMP-1,O-78,3,paid\nCRM-IMP-1,O-77,5,paid\n")  # fmt: skip
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sandbox[1].members[made.json()["id"]]["points"] == 8

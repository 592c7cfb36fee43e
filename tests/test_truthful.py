"""Issue 19, "a green step means the pass is right", through a real `relay serve` against the
PassKit sandbox: hooks minted from now on (v2) answer truthfully, old URLs keep their answers."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from relay.access.tokens import Hook, HookSigner
from relay.commands.privacy import ERASE_NOTHING_FOUND
from relay.delivery.templating import TemplateLibrary
from relay.hooks import minting
from relay.sandbox import (
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    SandboxConfig,
    State,
    create_sandbox,
)

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, ROOT, SECRET_KEY
from .processes import ServerProcess
from .servers import relay_process, serve_in_thread
from .test_admin import PASSWORD
from .test_admin_sessions import get, sign_in

PROGRAM = {"program_id": DEMO_PROGRAM_ID}
MEMBERS = {**PROGRAM, "tier_id": "base"}


@pytest.fixture(scope="module")
def sandbox_module() -> Iterator[tuple[str, State]]:
    app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(app) as url:
        yield url, app.state.sandbox


@pytest.fixture(scope="module")
def relay(
    sandbox_module: tuple[str, State], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """`relay serve` as Heroku runs it, calling the sandbox, with a SQLite file `relay erase`
    can open too."""
    folder = tmp_path_factory.mktemp("relay")
    env = {"PASSKIT_API_URL": sandbox_module[0], "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
           "RELAY_RETRY_BUDGET": "2", "RELAY_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    process = relay_process(env, folder / "relay.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def sandbox(sandbox_module: tuple[str, State]) -> Iterator[State]:
    """The module's sandbox, emptied of members and faults after each test."""
    yield sandbox_module[1]
    httpx.post(f"{sandbox_module[0]}/_sandbox/reset")
    faults = {"drop_after_next": 0, "down": [], "next_429": 0}
    httpx.post(f"{sandbox_module[0]}/_sandbox/faults", json=faults)


def faults(sandbox_url: str, **changes: Any) -> None:
    answer = httpx.post(f"{sandbox_url}/_sandbox/faults", json=changes)
    assert answer.status_code == 200, answer.text


def new_url(template: str, **params: str) -> str:
    """A hook URL's path as `relay url` and the console mint it today (v2); offline, so a
    template that reads date-times is given a zone (UTC unless said)."""
    library = TemplateLibrary(ROOT / "templates")
    if "timezone" in minting.endpoint(library, template).params:
        params.setdefault("timezone", "UTC")
    _, _, url = minting.mint(HookSigner([SECRET_KEY]), library, template, params, "http://x")
    return url.removeprefix("http://x")


def old_url(template: str, **params: str) -> str:
    """A hook URL as minted before v2: its params without the version marker."""
    token = HookSigner([SECRET_KEY]).mint(Hook("hk_old0000001", template, params))
    return f"/hooks/{token}"


def post(relay: ServerProcess, path: str, **fields: Any) -> httpx.Response:
    return httpx.post(relay.url + path, json=fields, timeout=30)


def enrol(relay: ServerProcess, external_id: str, email: str) -> dict[str, Any]:
    answer = post(relay, new_url("member-enrol", **MEMBERS), external_id=external_id,
                  email=email, first_name="Ana")  # fmt: skip
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


# -- 5: searches succeed when they find nothing ---------------------------------------------


def test_new_lookup_answers_a_miss_found_false_and_a_hit_found_true(
    relay: ServerProcess, sandbox: State
) -> None:
    made = enrol(relay, "CRM-FOUND-1", "found@example.com")
    lookup = new_url("member-lookup", **PROGRAM)
    miss = post(relay, lookup, external_id="CRM-NOBODY")
    assert miss.status_code == 200, miss.text
    assert miss.json()["ok"] is True and miss.json()["found"] is False
    hit = post(relay, lookup, external_id="CRM-FOUND-1")
    assert hit.status_code == 200 and hit.json()["found"] is True
    assert hit.json()["id"] == made["id"]


def test_if_missing_fail_and_old_lookup_urls_keep_the_404(
    relay: ServerProcess, sandbox: State
) -> None:
    failing = post(relay, new_url("member-lookup", **PROGRAM, if_missing="fail"),
                   external_id="CRM-NOBODY")  # fmt: skip
    assert failing.status_code == 404, failing.text
    old = post(relay, old_url("member-lookup", **PROGRAM), external_id="CRM-NOBODY")
    assert old.status_code == 404 and old.json()["error"]["code"] == "not_found"
    assert "found" not in old.json()


def test_member_find_by_email_within_the_program(relay: ServerProcess, sandbox: State) -> None:
    made = enrol(relay, "CRM-FIND-1", "Finder@Example.com")
    enrol(relay, "CRM-FIND-2", "someone.else@example.com")
    find = new_url("member-find", **PROGRAM)
    hit = post(relay, find, email="finder@example.com")
    assert hit.status_code == 200, hit.text
    assert hit.json()["found"] is True and hit.json()["id"] == made["id"]
    assert hit.json()["result"]["externalId"] == "CRM-FIND-1"
    miss = post(relay, find, email="nobody@example.com")
    assert miss.status_code == 200 and miss.json()["found"] is False
    failing = post(relay, new_url("member-find", **PROGRAM, if_missing="fail"),
                   email="nobody@example.com")  # fmt: skip
    assert failing.status_code == 404


# -- 6: never "made outside this relay" for the relay's own create ---------------------------


def test_lost_create_whose_lookup_fails_is_503_then_settles_with_the_members_id(
    relay: ServerProcess, sandbox: State, sandbox_module: tuple[str, State]
) -> None:
    url = sandbox_module[0]
    enrolling = new_url("member-enrol", **MEMBERS)
    fields = {"external_id": "CRM-LOST-1", "email": "lost@example.com"}
    # PassKit makes the member and the answer is lost; the client's retry is told it exists;
    # the look-up that would settle it answers 503 throughout.
    faults(url, drop_after_next=1, down=["getMemberRecordByExternalId"])
    first = post(relay, enrolling, **fields)
    assert first.status_code == 503, first.text
    assert first.json()["error"]["code"] == "passkit_busy"
    assert int(first.headers["Retry-After"]) > 0
    assert len(sandbox.members) == 1
    faults(url, down=[])
    again = post(relay, enrolling, **fields)
    assert again.status_code == 200, again.text
    member_id = next(iter(sandbox.members))
    assert again.json()["id"] == member_id
    assert len(sandbox.members) == 1
    third = post(relay, enrolling, **fields)
    assert third.status_code == 200 and third.json()["id"] == member_id


# -- 7: erase says when it found nothing ----------------------------------------------------


def erase(relay: ServerProcess, who: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "relay", "erase", who]
    return subprocess.run(argv, env=relay.env, capture_output=True, text=True, timeout=60)


def test_erase_of_an_unknown_address_exits_3_and_erases_nothing(
    relay: ServerProcess, sandbox: State
) -> None:
    enrol(relay, "CRM-ERASE-1", "erase.me@example.com")
    misspelt = erase(relay, "erase.me@exmaple.com")
    assert misspelt.returncode == ERASE_NOTHING_FOUND == 3, misspelt.stdout + misspelt.stderr
    assert "nothing found for 'erase.me@exmaple.com' — check the spelling; nothing was erased" in (
        misspelt.stderr
    )
    assert "Erased" not in misspelt.stdout
    right = erase(relay, "erase.me@example.com")
    assert right.returncode == 0, right.stderr
    assert "Erased 'erase.me@example.com'" in right.stdout
    assert erase(relay, "erase.me@example.com").returncode == 3  # nothing left the second time


# -- 1: fields the template does not use ----------------------------------------------------


def test_a_misspelt_field_is_refused_with_the_field_it_meant(
    relay: ServerProcess, sandbox: State
) -> None:
    enrolling = new_url("member-enrol", **MEMBERS)
    sent = {"external_id": "CRM-SPELL-1", "email": "spell@example.com"}
    refused = httpx.post(relay.url + enrolling, data={**sent, "Frist Name": "Ana"}, timeout=30)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["message"] == ("frist_name is not a field of this hook — did you mean first_name?")
    points = post(relay, enrolling, **sent, first_name="Ana", Piont="50")
    assert points.status_code == 422
    assert "did you mean points?" in points.json()["error"]["message"]
    assert sandbox.members == {}  # nothing was sent
    # Sent with the field it resembles, the same name is only an extra: listed, not refused.
    both = post(relay, enrolling, **sent, first_name="Ana", frist_name="Ana", shoe_size="42")
    assert both.status_code == 200, both.text
    assert both.json()["ignored_fields"] == ["frist_name", "shoe_size"]
    assert "ignored" not in both.json()  # the old boolean keeps its meaning (a no-op delete)
    [member] = sandbox.members.values()
    assert member["person"]["forename"] == "Ana"


def test_a_declared_alias_is_read_as_its_field(relay: ServerProcess, sandbox: State) -> None:
    enrolling = new_url("member-enrol", **MEMBERS, country="GB")
    answer = post(relay, enrolling, external_id="CRM-ALIAS-1", email="alias@example.com",
                  phone="07911 123456")  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["ignored_fields"] == []
    [member] = sandbox.members.values()
    assert member["person"]["mobileNumber"] == "+447911123456"


def test_an_old_url_still_takes_a_misspelt_field_and_now_lists_it(
    relay: ServerProcess, sandbox: State
) -> None:
    enrolling = old_url("member-enrol", **MEMBERS)
    answer = httpx.post(relay.url + enrolling, timeout=30, data={
        "external_id": "CRM-OLD-1", "email": "old@example.com", "Frist Name": "Ana",
        "phone": "+447911123456"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] if "created" in answer.json() else answer.json()["ok"]
    assert answer.json()["ignored_fields"] == ["frist_name", "phone"]
    [member] = sandbox.members.values()
    assert "forename" not in member.get("person", {})  # as before: the old URL is unchanged
    assert "mobileNumber" not in member.get("person", {})


# -- 4: additive operations are recognised by the order -------------------------------------


def test_the_same_order_sent_twice_through_points_earn_adds_once(
    relay: ServerProcess, sandbox: State
) -> None:
    made = enrol(relay, "CRM-EARN-1", "earn@example.com")
    earning = new_url("member-points-earn", **PROGRAM, key_field="Order ID")
    order = {"external_id": "CRM-EARN-1", "points": "50", "order_id": "O-1001"}
    first = post(relay, earning, **order)
    assert first.status_code == 200, first.text
    again = post(relay, earning, **order)  # Zapier's replay, a re-run, a double click
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert sandbox.members[made["id"]]["points"] == 50
    other = post(relay, earning, **{**order, "order_id": "O-1002"})
    assert other.status_code == 200
    assert sandbox.members[made["id"]]["points"] == 100
    reused = post(relay, earning, **{**order, "points": "70"})  # same order, other fields
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert reused.json()["error"]["message"].startswith("order_id 'O-1001' was already counted")
    unnamed = post(relay, earning, external_id="CRM-EARN-1", points="5")
    assert unnamed.status_code == 422 and unnamed.json()["error"]["field"] == "order_id"
    explicit = post(relay, earning, **order, idempotency_key="manual-1")  # an explicit key wins
    assert explicit.status_code == 200 and explicit.json()["duplicate"] is False
    assert sandbox.members[made["id"]]["points"] == 150


def test_key_field_none_counts_each_call_and_old_urls_count_each_call(
    relay: ServerProcess, sandbox: State
) -> None:
    made = enrol(relay, "CRM-EARN-2", "earn2@example.com")
    order = {"external_id": "CRM-EARN-2", "points": "10", "order_id": "O-1"}
    for url in (new_url("member-points-earn", **PROGRAM, key_field="none"),
                old_url("member-points-earn", **PROGRAM)):  # fmt: skip
        for _ in range(2):
            assert post(relay, url, **order).status_code == 200
    assert sandbox.members[made["id"]]["points"] == 40


def test_minting_an_additive_hook_needs_key_field_or_none() -> None:
    for template in ("member-points-earn", "member-points-burn", "member-check-in",
                     "member-check-out"):  # fmt: skip
        with pytest.raises(minting.MintError) as refused:
            new_url(template, **PROGRAM)
        assert refused.value.problems == [minting.KEY_FIELD_NEEDED]
        assert "What identifies one purchase" in minting.KEY_FIELD_NEEDED.replace("what", "What")
    with pytest.raises(minting.MintError):
        new_url("coupon-redeem", campaign_id="2bWzCmsbOSqOu8nLhYKQqV")
    assert new_url("member-points-burn", **PROGRAM, key_field="none")
    assert new_url("member-points-set", **PROGRAM)  # sets, adds nothing: no key_field asked


def test_relay_url_refuses_a_points_earn_hook_without_key_field(relay: ServerProcess) -> None:
    argv = [sys.executable, "-m", "relay", "url", "member-points-earn", "--offline",
            "--param", f"program_id={DEMO_PROGRAM_ID}"]  # fmt: skip
    refused = subprocess.run(argv, env=relay.env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "what identifies one purchase, visit or order in your app?" in refused.stderr


# -- 2: one number reading per hook ---------------------------------------------------------


def test_a_comma_joined_list_is_refused_and_read_as_a_decimal_only_under_1_234_56(
    relay: ServerProcess, sandbox: State
) -> None:
    made = enrol(relay, "CRM-NUM-1", "num@example.com")
    member = {"external_id": "CRM-NUM-1"}
    default = new_url("member-points-earn", **PROGRAM, key_field="none")
    listed = post(relay, default, **member, points="10,20")  # Zapier's two line items
    assert listed.status_code == 422, listed.text
    error = listed.json()["error"]
    assert error["field"] == "points" and "'10,20'" in error["message"]
    assert "looks like a list of numbers" in error["message"]
    assert "add them up with Zapier's Formatter" in error["hint"]
    wrong_mark = post(relay, default, **member, points="1.234,5")
    assert wrong_mark.status_code == 422 and "1,234.56" in wrong_mark.json()["error"]["hint"]
    assert sandbox.members[made["id"]].get("points", 0) == 0
    assert post(relay, default, **member, points="1,250").status_code == 200
    assert sandbox.members[made["id"]]["points"] == 1250
    european = new_url("member-points-earn", **PROGRAM, key_field="none",
                       number_format="1.234,56")  # fmt: skip
    assert post(relay, european, **member, points="10,20").status_code == 200
    assert sandbox.members[made["id"]]["points"] == pytest.approx(1260.2)
    refused = post(relay, european, **member, points="12.5")  # a dot is for thousands here
    assert refused.status_code == 422 and "1.234,56" in refused.json()["error"]["message"]
    # An old URL reads as it always did: 10,20 is 10.2.
    old = post(relay, old_url("member-points-earn", **PROGRAM), **member, points="10,20")
    assert old.status_code == 200
    assert sandbox.members[made["id"]]["points"] == pytest.approx(1270.4)


def test_number_format_is_offered_in_words_and_checked_at_minting() -> None:
    spec = minting.endpoint(TemplateLibrary(ROOT / "templates"), "member-points-earn").params[
        "number_format"
    ]
    assert spec.default == "1,234.56" and spec.choices == ("1,234.56", "1.234,56")
    assert "Shopify, Stripe" in spec.choice_label("1,234.56")
    with pytest.raises(minting.MintError) as refused:
        new_url("member-points-earn", **PROGRAM, key_field="none", number_format="1 234,56")
    assert refused.value.problems[0].startswith("number_format '1 234,56' must be")


# -- 3: local times -------------------------------------------------------------------------

TICKETS = {"production_id": DEMO_PRODUCTION_ID, "venue_id": DEMO_VENUE_ID,
           "ticket_type_id": DEMO_TICKET_TYPE_ID}  # fmt: skip


def test_a_new_york_venues_evening_is_sent_in_new_york_time_and_old_urls_keep_utc(
    relay: ServerProcess, sandbox: State
) -> None:
    # PassKit issues tickets for events within 90 days: the show is 20 days ahead.
    day = (datetime.now(UTC) + timedelta(days=20)).date()
    local = datetime.combine(day, time(19, 30), ZoneInfo("America/New_York"))
    expected = local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # 00:30Z the next day
    assert expected.startswith((day + timedelta(days=1)).isoformat())  # EST or EDT alike
    new = new_url("ticket-issue", **TICKETS, timezone="America/New_York")
    answer = post(relay, new, ticket_number="T-NY-1", event_start=f"{day} 19:30",
                  email="ana@example.com")  # fmt: skip
    assert answer.status_code == 200, answer.text
    starts = {e["scheduledStartDate"] for e in sandbox.events.values()}
    assert starts == {expected}
    old = post(relay, old_url("ticket-issue", **TICKETS), ticket_number="T-OLD-1",
               event_start=f"{day} 19:30", email="ana@example.com")  # fmt: skip
    assert old.status_code == 200, old.text
    assert f"{day}T19:30:00Z" in {e["scheduledStartDate"] for e in sandbox.events.values()}
    with_offset = post(relay, new, ticket_number="T-NY-2", event_start=f"{day}T19:30:00Z",
                       email="ana@example.com")  # fmt: skip
    assert with_offset.status_code == 200  # an offset or Z keeps it: the old URL's event
    assert len(sandbox.events) == 2


def test_a_time_the_clocks_skip_is_refused_and_one_they_pass_twice_is_the_earlier(
    relay: ServerProcess, sandbox: State
) -> None:
    made = enrol(relay, "CRM-TZ-1", "tz@example.com")
    updating = new_url("member-update", **PROGRAM, timezone="America/New_York")
    member = {"external_id": "CRM-TZ-1"}
    gap = post(relay, updating, **member, expiry="2027-03-14 02:30", dry_run="1")
    assert gap.status_code == 422, gap.text
    assert gap.json()["error"]["field"] == "expiry"
    assert "does not exist in America/New_York" in gap.json()["error"]["message"]
    overlap = post(relay, updating, **member, expiry="2026-11-01 01:30")
    assert overlap.status_code == 200, overlap.text
    assert sandbox.members[made["id"]]["expiryDate"] == "2026-11-01T05:30:00Z"  # EDT, -4
    assert "happens twice in America/New_York" in overlap.json()["notes"][0]
    with pytest.raises(minting.MintError) as refused:
        new_url("ticket-issue", **TICKETS, timezone="New York")
    assert "use an IANA name such as Europe/London" in refused.value.problems[0]


def test_unused_fields_are_named_on_the_delivery_page_and_the_hook_pages_test_form(
    relay: ServerProcess, sandbox: State
) -> None:
    enrolling = new_url("member-enrol", **MEMBERS)
    sent = {"external_id": "CRM-PAGE-1", "email": "page@example.com", "shoe_size": "42"}
    assert post(relay, enrolling, **sent).status_code == 200
    cookie = sign_in(relay.url)
    listing = get(relay.url, "/admin/deliveries", cookie).text
    delivery = re.search(r'href="(/admin/deliveries/[^"/]+)"', listing)
    assert delivery, listing[:500]
    page = get(relay.url, delivery.group(1), cookie).text
    assert "Not used by this hook, so not sent to PassKit: shoe_size." in page
    tried = httpx.post(f"{relay.url}{enrolling}/try", data=sent, timeout=30)
    assert tried.status_code == 200, tried.text
    assert "Not used by this hook, so they would not reach PassKit: shoe_size." in tried.text


def test_answers_worked_out_from_the_names_alone_are_remembered_but_never_the_values() -> None:
    """What a template makes of a delivery's field names (aliases, misspellings, ignored names)
    is remembered per template, since a zap sends the same names every time; the values still
    come from each delivery, and the memory stays bounded."""
    from relay.delivery import unused

    template = TemplateLibrary(ROOT / "templates").get("member-enrol")
    assert template is not None
    for points in ("1", "2"):  # the second answer comes from memory: still its own value
        fields = {"email": f"ana{points}@example.com", "phone": points, "frist_name": "Ana"}
        renamed = unused.with_aliases(template, fields)
        assert renamed == {"email": fields["email"], "frist_name": "Ana", "mobile": points}
        assert unused.misspelling(template, renamed) == ("frist_name", "first_name")
        assert unused.ignored_fields(template, renamed) == ["frist_name"]
    plain = {"email": "a@example.com"}
    assert unused.with_aliases(template, plain) is plain  # nothing to rename: no copy
    for n in range(unused.MEMO_LISTS * 2):
        unused.ignored_fields(template, [f"extra_{n}", "email"])
    assert len(template.by_names) <= unused.MEMO_LISTS

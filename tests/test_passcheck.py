"""What the member sees: the sandbox's .pkpass bundles, relay.passkit.passcheck reading them off a
real sandbox server, and the admin console's "Check the pass" button on a logged delivery."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import Callable

import httpx
import pytest
import respx

from relay.passkit.client import mint_jwt
from relay.passkit.passcheck import PassChecker, PassCheckError, pkpass_url, read_pkpass
from relay.sandbox import (
    DEMO_DRAFT_PROGRAM_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    State,
)
from relay.store import Store

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, make_settings, mint
from .test_admin import PASSWORD, sign_in, token_in

pytestmark = pytest.mark.anyio


def call(url: str, path: str, body: dict[str, object]) -> str:
    """A PassKit call to the sandbox at `url`; the new record's id."""
    token = mint_jwt(PASSKIT_KEY, PASSKIT_SECRET, int(time.time()) - 10, 70)
    answer = httpx.post(url + path, json=body, headers={"Authorization": token})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def enrol(url: str, program: str = DEMO_PROGRAM_ID, **extra: object) -> str:
    body = {"programId": program, "tierId": "gold" if program == DEMO_PROGRAM_ID else "base"}
    return call(url, "/members/member", body | extra)


def ticket(url: str) -> str:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86_400))
    event = {"productionId": DEMO_PRODUCTION_ID, "venueId": DEMO_VENUE_ID,
             "scheduledStartDate": start}  # fmt: skip
    body = {"ticketTypeId": DEMO_TICKET_TYPE_ID, "event": event,
            "person": {"displayName": "Grace Hopper"}}  # fmt: skip
    return call(url, "/eventTickets/ticket", body)  # no ticketNumber


def test_the_sandbox_pkpass_is_a_zip_whose_manifest_matches(
    sandbox: tuple[str, State],
) -> None:
    url, _ = sandbox
    member = enrol(url, externalId="C1", points=120, person={"displayName": "Ada Lovelace"})
    answer = httpx.get(f"{url}/pass/{member}.pkpass")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.apple.pkpass"
    bundle = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(bundle.namelist())
    assert {"pass.json", "en.lproj/pass.strings", "manifest.json", "signature"} <= names
    manifest = json.loads(bundle.read("manifest.json"))
    assert set(manifest) == names - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert hashlib.sha1(bundle.read(name)).hexdigest() == digest, name
    content = json.loads(bundle.read("pass.json"))
    assert content["formatVersion"] == 1 and content["serialNumber"] == member
    for key in ("passTypeIdentifier", "teamIdentifier", "organizationName", "description"):
        assert content[key], key
    card = content["storeCard"]
    assert card["primaryFields"][0]["value"] == "Ada Lovelace" and card["backFields"]
    assert content["barcodes"][0]["message"]
    assert httpx.get(f"{url}/pass/nosuchpass.pkpass").status_code == 404
    assert httpx.get(f"{url}/pass/{member}").headers["content-type"].startswith("text/html")


async def test_the_checker_reads_a_members_pass_off_the_sandbox(
    sandbox: tuple[str, State],
) -> None:
    url, _ = sandbox
    member = enrol(url, externalId="C2", points=250, person={"forename": "Ada",
                                                           "surname": "Lovelace"})  # fmt: skip
    checker = PassChecker(f"{url}/pass/")
    reading = await checker.check(f"{url}/pass/{member}")
    seen = {f.label: f.value for f in reading.fields}
    assert seen["Member"] == "Ada Lovelace" and seen["Points"] == "250"
    assert seen["Tier"] == "Gold" and reading.style == "storeCard"
    assert [f.label for f in reading.section("primary")] == ["Member"]
    assert reading.problems == [] and reading.barcode == member
    assert await checker.check(f"{url}/pass/{member}") is reading  # kept, not fetched again


async def test_the_checker_flags_a_draft_a_blank_name_and_a_missing_barcode(
    sandbox: tuple[str, State],
) -> None:
    url, _ = sandbox
    checker = PassChecker(f"{url}/pass")
    draft = await checker.check(f"{url}/pass/{enrol(url, DEMO_DRAFT_PROGRAM_ID)}")
    said = " ".join(draft.problems)
    assert "Test Pass - Not for Commercial Use" in said and "draft" in said
    assert "name (Member) is blank" in said
    assert draft.section("back")[-1].value == "Test Pass - Not for Commercial Use"
    issued = await checker.check(f"{url}/pass/{ticket(url)}")
    assert issued.barcode == "missing: ticketNumber"
    assert [p for p in issued.problems if '"missing: ticketNumber"' in p]
    assert {f.label: f.value for f in issued.fields}["Name"] == "Grace Hopper"


async def test_the_checker_fetches_nothing_outside_passkit_pass_url(
    sandbox: tuple[str, State],
) -> None:
    url, state = sandbox
    checker = PassChecker(f"{url}/pass")
    for outside in ("https://evil.example.com/pass/abc", f"{url}/_sandbox/state",
                    f"{url}/pass/../_sandbox/state", f"{url}/passes/abc",
                    f"{url}/pass/abc?x=1", f"{url}/pass/a/b"):  # fmt: skip
        with pytest.raises(PassCheckError, match="Only passes under PASSKIT_PASS_URL"):
            await checker.check(outside)
    assert state.calls == {}  # nothing reached the sandbox
    assert pkpass_url(f"{url}/pass/abc", f"{url}/pass/") == f"{url}/pass/abc.pkpass"


async def test_failures_are_one_plain_sentence(sandbox: tuple[str, State]) -> None:
    url, _ = sandbox
    checker = PassChecker(f"{url}/pass", max_bytes=100)
    with pytest.raises(PassCheckError, match="no such pass"):
        await checker.check(f"{url}/pass/nosuchpass")
    member = enrol(url)
    with pytest.raises(PassCheckError, match="larger than"):
        await checker.check(f"{url}/pass/{member}")
    with pytest.raises(PassCheckError, match="could not be reached"):
        await PassChecker("http://127.0.0.1:9/pass").check("http://127.0.0.1:9/pass/abc")
    with pytest.raises(PassCheckError, match="not a zip"):
        read_pkpass(b"<html>not found</html>")
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as bundle:
        bundle.writestr("pass.json", "{not json")
    with pytest.raises(PassCheckError, match="could not be read"):
        read_pkpass(empty.getvalue())


async def test_check_the_pass_on_a_logged_delivery(
    sandbox: tuple[str, State],
    make_client: Callable[..., httpx.AsyncClient],
    passkit: respx.MockRouter,
    store: Store,
) -> None:
    url, _ = sandbox
    member = enrol(url, externalId="C3", points=40, person={"displayName": "Ada Lovelace"})
    # The relay's PassKit calls are mocked; its pass pages are the real sandbox's.
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": member}))
    settings = make_settings(RELAY_ADMIN_PASSWORD=PASSWORD, PASSKIT_PASS_URL=f"{url}/pass")
    admin = make_client(settings, store=store)
    admin.base_url = httpx.URL("https://relay.example.com")
    await sign_in(admin)
    hook_path = mint("member-enrol", program_id=DEMO_PROGRAM_ID, tier_id="gold")
    delivered = await admin.post(hook_path, data={"external_id": "C3", "email": "a@b.co"})
    assert delivered.status_code == 200 and delivered.json()["pass_url"] == f"{url}/pass/{member}"
    [logged] = await store.list_deliveries(outcome="ok")
    page = await admin.get(f"/admin/deliveries/{logged.id}")
    assert "Check the pass" in page.text
    no_token = await admin.post(f"/admin/deliveries/{logged.id}/pass")
    assert no_token.status_code == 403
    checked = await admin.post(
        f"/admin/deliveries/{logged.id}/pass", data={"csrf": token_in(page.text)}
    )
    # POST/redirect/GET: Back or a reload shows the reading again, and reads nothing again.
    assert checked.status_code == 303 and "?checked=" in checked.headers["location"]
    shown = await admin.get(checked.headers["location"])
    assert "What the member sees" in shown.text
    assert (await admin.get(checked.headers["location"])).text == shown.text
    assert "What the member sees" not in (await admin.get(f"/admin/deliveries/{logged.id}")).text
    opened = await admin.get(f"/admin/deliveries/{logged.id}/pass")  # the address, typed
    assert (opened.status_code, opened.headers["location"]) == (
        303, f"/admin/deliveries/{logged.id}")  # fmt: skip
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", shown.text))
    assert "Member (the big line) Ada Lovelace" in text and "Points (top right) 40" in text
    assert "storeCard" not in text.split("Technical details")[0]  # Apple's terms, under details
    assert "No problems found" in text

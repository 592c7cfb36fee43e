"""The mint form, the hook pages and a broken template, read as the gym owner and the zap
builder read them: plain names first, choices as choices, no Python and no command line."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from html import unescape
from pathlib import Path

import httpx
import pytest
import respx

from relay.store import Store

from .conftest import make_settings, mint
from .test_admin import PASSWORD, PROGRAM, sign_in, token_in

pytestmark = pytest.mark.anyio


@pytest.fixture
def admin(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(make_settings(RELAY_ADMIN_PASSWORD=PASSWORD), store=store)


def text_of(html: str) -> str:
    """What a person reads: the page without its tags, style and script."""
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def test_the_mint_form_groups_what_a_hook_can_do_under_plain_names(
    admin: httpx.AsyncClient,
) -> None:
    await sign_in(admin)
    form = (await admin.get("/admin/hooks/new")).text
    groups = re.findall(r'<optgroup label="([^"]+)">', form)
    assert groups == ["Members", "Coupons", "Tickets", "Stripe", "Events from PassKit"]
    members = form[form.index('label="Members"') : form.index('label="Coupons"')]
    options = dict(re.findall(r'<option value="([^"]+)"\s*>([^<]+)</option>', members))
    assert options["member-enrol"] == "Enrol a new member"
    assert options["member-points-earn"] == "Add points"
    assert "member-enrol" not in text_of(form)  # the internal name is no option's text
    stripe = form[form.index('label="Stripe"') : form.index('label="Events from PassKit"')]
    assert re.search(r'<option value="stripe"\s*>Passes from Stripe payments', stripe)
    events = form[form.index('label="Events from PassKit"') :]
    assert re.search(r'<option value="passkit-events"\s*>Send pass events', events)


async def test_a_passkit_events_hook_minted_in_the_console_says_what_to_do_in_passkit(
    admin: httpx.AsyncClient,
) -> None:
    await sign_in(admin)
    csrf = token_in((await admin.get("/admin/hooks/new?template=passkit-events")).text)
    catch = "https://hooks.zapier.com/hooks/catch/123/abc/"
    minted = await admin.post(
        "/admin/hooks/new",
        data={"csrf": csrf, "template": "passkit-events", "label": "Wallet installs to HubSpot",
              "param:forward_to": catch, "param:events": "installed,uninstalled"},
    )  # fmt: skip
    assert minted.status_code == 303, minted.text
    page = (await admin.get(minted.headers["location"])).text
    words = text_of(page)
    assert "/passkit/" in page and "Integrations › Webhooks" in words
    assert "signing secret" in words and "Stripe" not in words


async def test_the_mint_form_labels_settings_in_words_and_offers_choices_as_selects(
    admin: httpx.AsyncClient,
) -> None:
    await sign_in(admin)
    form = (await admin.get("/admin/hooks/new?template=member-enrol")).text
    words = text_of(form)
    assert "Enrol a new member" in words
    assert "Program (required)" in words and "Tier (required)" in words
    assert "Date order (optional)" in words and "Country for local phone numbers" in words
    assert "program_id (required)" not in words and "--param" not in words
    date_order = re.search(r'<select id="p-date_order".*?</select>', form, re.S)
    assert date_order is not None
    assert re.findall(r'value="(\w+)"[^>]*>([^<]+)<', date_order.group(0)) == [
        ("DMY", "Day first (31/12/2026), the default"),
        ("MDY", "Month first (12/31/2026)"),
    ]
    country = re.search(r'<select id="p-country".*?</select>', form, re.S)
    assert country is not None
    assert '<option value="GB" >United Kingdom</option>' in country.group(0)
    assert '<option value="US" >United States</option>' in country.group(0)
    assert len(re.findall("<option", country.group(0))) > 200  # every country, by name


async def test_the_date_order_and_country_chosen_are_what_the_hook_carries(
    admin: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(admin)
    form = await admin.get("/admin/hooks/new?template=member-enrol")
    minted = await admin.post("/admin/hooks/new", data={
        "csrf": token_in(form.text), "template": "member-enrol", "label": "Front desk",
        "param:program_id": PROGRAM, "param:tier_id": "base", "param:country": "GB",
        "param:date_order": "MDY"})  # fmt: skip
    assert minted.status_code == 303
    [hook] = await store.list_hooks()
    assert hook.params == {"program_id": PROGRAM, "tier_id": "base", "country": "GB",
                           "date_order": "MDY", "v": "2"}  # fmt: skip
    # Its page and the list show the settings by name, the stored value second.
    page = text_of((await admin.get(f"/admin/hooks/{hook.id}")).text)
    assert "Country for local phone numbers United Kingdom GB" in page
    assert "Date order Month first (12/31/2026) MDY" in page
    listing = text_of((await admin.get("/admin/hooks")).text)
    assert "Front desk Enrol a new member" in listing and "Active" in listing
    # A required setting left out is named in words, not as a command-line flag.
    refused = await admin.post("/admin/hooks/new", data={"csrf": token_in(form.text),
                               "template": "member-enrol", "param:tier_id": "base"})  # fmt: skip
    assert refused.status_code == 422
    # Beside the field, in words: the setting's name only under Technical details.
    assert 'id="problem-program_id" role="alert">Program is required' in refused.text
    assert "--param" not in refused.text


async def test_a_revoked_hook_says_so_in_words(admin: httpx.AsyncClient, store: Store) -> None:
    await sign_in(admin)
    form = await admin.get("/admin/hooks/new?template=member-lookup")
    await admin.post("/admin/hooks/new", data={"csrf": token_in(form.text), "label": "Till 3",
                     "template": "member-lookup", "param:program_id": PROGRAM})  # fmt: skip
    [hook] = await store.list_hooks()
    revoked = await admin.post(f"/admin/hooks/{hook.id}/revoke", data={"csrf": token_in(form.text)})
    listing = text_of((await admin.get(revoked.headers["location"])).text)
    assert "Revoked “Till 3”: its URL no longer works" in listing
    assert "Revoked" in listing and "Active" not in listing


def write_broken(folder: Path) -> None:
    """A template whose `date` filter is given an order no one can read dates in: the
    template author's mistake, raised as ValueError inside Jinja on line 8."""
    (folder / "broken.json.j2").write_text(
        '{#---\noperation = "members.lookup"\nsummary = "Look up"\n[params]\n'
        'program_id = "p"\n---#}\n{\n  "birth": {{ form.birthday|date("dd/mm")|tojson }},\n'
        '  "programId": {{ params.program_id|tojson }}\n}\n'
    )


async def test_a_broken_template_is_told_in_words_and_its_python_kept_for_the_log(
    make_client: Callable[..., httpx.AsyncClient],
    store: Store,
    tmp_path: Path,
    passkit: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_broken(tmp_path)
    settings = make_settings(RELAY_TEMPLATES=str(tmp_path), RELAY_ADMIN_PASSWORD=PASSWORD)
    client = make_client(settings, store=store)
    path = mint("broken", program_id=PROGRAM)
    with caplog.at_level(logging.WARNING, logger="relay"):
        answer = await client.post(path, data={"birthday": "zeb.quark-1990"})
    assert answer.status_code == 500 and not passkit.calls
    error = answer.json()["error"]
    assert error["code"] == "template_error"
    assert error["message"].startswith("The relay's template broken has a mistake at line 8")
    assert "ask whoever edits the relay's templates" in error["message"].lower()
    for said in (error["message"], error["hint"]):
        assert "ValueError" not in said and "dd/mm" not in said and "relay check" not in said
    [record] = await store.list_deliveries()
    assert record.error_message and "ValueError" not in record.error_message
    # The operator's log has the Python, with what the sender sent masked.
    logged = [r.getMessage() for r in caplog.records if "template broken" in r.getMessage()]
    assert logged and "ValueError: date order must be DMY or MDY" in logged[0]
    assert "zeb.quark" not in caplog.text
    # The console shows the delivery in words too.
    await sign_in(client)
    deliveries = text_of((await client.get("/admin/deliveries")).text)
    assert "ValueError" not in deliveries and "Traceback" not in deliveries


async def test_the_hook_pages_form_speaks_to_the_person_filling_it_in(
    relay_client: httpx.AsyncClient,
) -> None:
    path = mint("member-enrol", program_id=PROGRAM, tier_id="base", date_order="MDY")
    html = {"accept": "text/html"}
    page = text_of((await relay_client.get(path, headers=html)).text)
    assert "Try it here" in page
    assert "Fill in a member as your zap would send them, then check." in page
    assert "Date order Month first (12/31/2026) MDY" in page  # settings in words
    tried = await relay_client.post(path + "/try", data={"first_name": "Ana"}, headers=html)
    result = text_of(tried.text[tried.text.index('<section id="result"') :])
    assert result.startswith("Not yet: External ID and Email are needed.")
    assert "Fill in External ID and Email above and try again." in result
    assert "Error code missing_field" in result  # under technical details, after the words
    assert "Data section" not in result
    email_box = re.search(r'<input id="f-email"[^>]*>', tried.text)
    assert email_box and 'aria-invalid="true"' in email_box.group(0)  # the box to fix
    wrong = await relay_client.post(path + "/try", data={"external_id": "C1", "email": "nope"},
                                    headers=html)  # fmt: skip
    words = text_of(wrong.text[wrong.text.index('<section id="result"') :])
    assert words.startswith("Not yet: Email ") and "Correct it above" in words
    fine = await relay_client.post(path + "/try", data={"external_id": "C1", "email": "a@b.co"},
                                   headers=html)  # fmt: skip
    assert "This works." in text_of(fine.text) and "POST /members/member" in fine.text
    # The zap's own answer keeps its Zapier/Make wording.
    answer = await relay_client.post(path + "?dry_run=1", data={"first_name": "Ana"})
    assert "Zapier's Data section" in answer.json()["error"]["hint"]

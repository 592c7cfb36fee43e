"""Tiers from cumulative spend (relay.stripe.spend), end to end: signed Stripe events into a real
relay in front of the PassKit sandbox, the pass's tier as PassKit then has it, the console's
Customers page; two relay processes on one PostgreSQL counting one event once; and minting's
checks of tier_for_spend and of image URLs."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.access.tokens import HookSigner
from relay.delivery.templating import ParamProblem, ParamSpec, TemplateLibrary, check_param
from relay.hooks.minting import MintError, endpoint, mint
from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.stripe.samples import sample_event

from .conftest import ROOT, SECRET_KEY
from .conftest import mint as mint_path
from .servers import relay_on_sandbox, relay_process
from .test_stripe import WHSEC, signed

pytestmark = pytest.mark.anyio

CUSTOMER = "cus_SpendAna01"
PASSWORD = "correct horse battery staple"
TIERS = "0=base,100=silver,500=gold"


def stripe_endpoint(**params: str) -> str:
    path = mint_path("stripe", program_id=DEMO_PROGRAM_ID, tier_id="base",
                     tier_for_spend=TIERS, **params)  # fmt: skip
    return "/stripe/" + path.rsplit("/", 1)[1]


def paid(amount: int, currency: str = "eur", customer: str = CUSTOMER) -> dict[str, Any]:
    """invoice.paid for `amount` (Stripe's minor units) of a subscription, a new event id."""
    event = sample_event("invoice.paid", customer=customer, email="ana@example.com")
    event["data"]["object"] |= {"amount_paid": amount, "currency": currency}
    return event


def refunded(amount: int, currency: str = "eur") -> dict[str, Any]:
    event = sample_event("charge.refunded", customer=CUSTOMER, email="ana@example.com")
    event["data"]["object"] |= {"amount_refunded": amount, "currency": currency}
    return event


async def send(client: httpx.AsyncClient, path: str, event: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(event).encode()
    answer = await client.post(path, content=body, headers=signed(body))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def tier_of(state: State, external_id: str = CUSTOMER) -> str | None:
    found = [m for m in state.members.values() if m["externalId"] == external_id]
    return found[0]["tierId"] if found else None


async def customers_page(client: httpx.AsyncClient) -> str:
    form = await client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    await client.post("/admin/login", data={"csrf": csrf.group(1), "password": PASSWORD})
    page = await client.get("/admin/customers")
    assert page.status_code == 200, page.text
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))


@pytest.mark.parametrize("tier_down", ["yes", "no"])
async def test_spend_moves_the_tier_up_and_a_refund_moves_it_down_only_when_allowed(
    tier_down: str, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    url, state = sandbox
    path = stripe_endpoint(tier_down=tier_down)
    first = paid(6000)
    with relay_on_sandbox(url, tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC,
                          RELAY_ADMIN_PASSWORD=PASSWORD) as relay:  # fmt: skip
        async with httpx.AsyncClient(base_url=relay, timeout=30) as client:
            answer = await send(client, path, first)
            assert answer["ok"] and answer["spend"]["total"] == "60.00 EUR"
            assert tier_of(state) == "base"
            await send(client, path, paid(5000))
            assert tier_of(state) == "silver"
            await send(client, path, paid(45000))
            assert tier_of(state) == "gold"

            # Stripe sends the first invoice again: nothing is counted, nothing is sent.
            calls = dict(state.calls)
            again = await send(client, path, first)
            assert again.get("duplicate") is True
            assert dict(state.calls) == calls and tier_of(state) == "gold"

            # 100.00 refunded: 460.00 is below gold's 500.
            answer = await send(client, path, refunded(10000))
            if tier_down == "yes":
                assert answer["ok"] and not answer.get("skipped"), answer
                assert tier_of(state) == "silver"
            else:
                assert answer["skipped"] is True
                assert "tiers move down only with tier_down=yes" in answer["reason"]
                assert tier_of(state) == "gold"
                assert dict(state.calls) == calls

            page = await customers_page(client)
    assert CUSTOMER in page and "Ana Díaz" in page
    assert "460.00 EUR" in page
    assert ("silver, since" if tier_down == "yes" else "gold, since") in page


async def test_a_payment_in_another_currency_is_refused_not_summed(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    url, state = sandbox
    path = stripe_endpoint()
    with relay_on_sandbox(url, tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC) as relay:
        async with httpx.AsyncClient(base_url=relay, timeout=30) as client:
            await send(client, path, paid(12000, "eur"))
            assert tier_of(state) == "silver"
            calls = dict(state.calls)
            answer = await send(client, path, paid(90000, "usd"))
            assert dict(state.calls) == calls and tier_of(state) == "silver"
            # A zero-decimal currency is counted in its own unit: ¥600 is not ¥60,000.
            japanese = await send(client, path, paid(600, "jpy", customer="cus_SpendYen01"))
    assert answer["ok"] is False and answer["error"]["code"] == "mixed_currency"
    message = answer["error"]["message"]
    assert "EUR" in message and "USD" in message and "not added" in message
    assert japanese["spend"]["total"] == "600 JPY" and tier_of(state, "cus_SpendYen01") == "gold"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_processes_given_one_event_count_it_once(
    database_url: str, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    url, state = sandbox
    env = {"PASSKIT_API_URL": url, "DATABASE_URL": database_url,
           "STRIPE_WEBHOOK_SECRET": WHSEC, "RELAY_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    relays = [relay_process(env, tmp_path / f"relay-{n}.log") for n in (1, 2)]
    try:
        for relay in relays:
            relay.start()
        path = stripe_endpoint()
        event = paid(30000)
        body = json.dumps(event).encode()
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(
                client.post(f"{relays[n % 2].url}{path}", content=body, headers=signed(body))
                for n in range(10)
            ))  # fmt: skip
            assert [a.status_code for a in answers] == [200] * 10, answers[0].text
            later = await send(client, f"{relays[1].url}{path}", paid(25000))
            async with httpx.AsyncClient(base_url=relays[0].url, timeout=30) as admin:
                page = await customers_page(admin)
    finally:
        for relay in relays:
            relay.stop()
    assert later["spend"]["total"] == "550.00 EUR"  # 300 once, then 250
    assert "550.00 EUR" in page
    assert tier_of(state) == "gold"


# -- minting -------------------------------------------------------------------------------

LIBRARY = TemplateLibrary(ROOT / "templates")
SIGNER = HookSigner([SECRET_KEY])


def mint_stripe(**params: str) -> dict[str, str]:
    hook, _, _ = mint(SIGNER, LIBRARY, "stripe", {"program_id": DEMO_PROGRAM_ID,
                                                 "tier_id": "base", **params},
                      "https://relay.example.com")  # fmt: skip
    return dict(hook.params)


def test_minting_takes_tier_for_spend_in_order_and_says_what_is_wrong() -> None:
    spec = endpoint(LIBRARY, "stripe").params["tier_for_spend"]
    assert spec.title == "Tier for what a customer has spent in all"
    down = endpoint(LIBRARY, "stripe").params["tier_down"]
    assert down.choice_label("yes") == "Yes: a refund can move a pass down"
    assert mint_stripe(tier_for_spend="500=Gold, 0=base,100.5=silver")["tier_for_spend"] == (
        "0=base,100.5=silver,500=gold"
    )
    for wrong, said in (("gold", "amount=tier pairs"), ("ten=silver", "amount=tier pairs"),
                        ("-5=base", "negative amount"), ("0=base,0=silver", "twice"),
                        ("100=", "amount=tier pairs")):  # fmt: skip
        with pytest.raises(MintError) as refused:
            mint_stripe(tier_for_spend=wrong)
        assert "tier_for_spend" in str(refused.value) and said in str(refused.value), wrong
    with pytest.raises(MintError, match="tier_down 'maybe' must be no or yes"):
        mint_stripe(tier_for_spend=TIERS, tier_down="maybe")


IMAGE = ParamSpec("logo_url", kind="image_url")


@pytest.mark.parametrize("url", [
    "https://cdn.example.com/logo.png", "https://8.8.8.8/logo.png",
    "https://[2606:4700::1111]/logo.png", "https://images.example.co.uk:8443/a.png?v=2",
])  # fmt: skip
def test_a_public_https_image_url_is_taken(url: str) -> None:
    assert check_param(IMAGE, url) == url


@pytest.mark.parametrize(("url", "said"), [
    ("http://cdn.example.com/logo.png", "must start with https://"),
    ("https://127.0.0.1/logo.png", "private or local network address"),
    ("https://127.1/logo.png", "private or local network address"),
    ("https://2130706433/logo.png", "private or local network address"),
    ("https://10.1.2.3/logo.png", "private or local network address"),
    ("https://192.168.0.10/logo.png", "private or local network address"),
    ("https://169.254.169.254/latest/meta-data", "private or local network address"),
    ("https://[::1]/logo.png", "private or local network address"),
    ("https://[fe80::1]/logo.png", "private or local network address"),
    ("https://[::ffff:10.0.0.1]/logo.png", "private or local network address"),
    ("https://localhost/logo.png", "local network"),
    ("https://printer.local/logo.png", "local network"),
    ("https://intranet/logo.png", "local network"),
    ("https://user:pw@cdn.example.com/logo.png", "user name or password"),
    ("logo.png", "must start with https://"),
])  # fmt: skip
def test_an_image_url_that_is_not_public_https_is_refused(url: str, said: str) -> None:
    with pytest.raises(ParamProblem) as refused:
        check_param(IMAGE, url)
    assert str(refused.value).startswith("logo_url ") and said in str(refused.value)


def test_minting_refuses_a_private_image_url_a_template_declares(tmp_path: Path) -> None:
    """No shipped template sets a pass image from a param (PassKit's members take
    profileImage; PassOverrides take image ids), so a template declares one here."""
    source = (ROOT / "templates" / "member-update.json.j2").read_text()
    picture = '[params.profile_image]\nkind = "image_url"\nhelp = "Picture on every pass"\n'
    declared = source.replace("[params]\n", "[params]\n" + picture + "required = false\n", 1)
    assert declared != source
    (tmp_path / "member-picture.json.j2").write_text(declared)
    library = TemplateLibrary(tmp_path)
    assert library.problems == []
    params = {"profile_image": "https://192.168.1.20/me.png", "timezone": "UTC"}
    with pytest.raises(MintError, match=r"profile_image .* private or local network"):
        mint(SIGNER, library, "member-picture", params, "https://relay.example.com")
    params["profile_image"] = "https://cdn.example.com/me.png"
    hook, _, _ = mint(SIGNER, library, "member-picture", params, "https://relay.example.com")
    assert hook.params["profile_image"] == "https://cdn.example.com/me.png"


def test_the_refund_sample_is_a_refund_of_part_of_a_charge() -> None:
    event = sample_event("charge.refunded", customer=CUSTOMER)
    assert copy.deepcopy(event)["data"]["previous_attributes"] == {"amount_refunded": 0}
    assert event["data"]["object"]["amount_refunded"] < event["data"]["object"]["amount"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_erase_spend_removes_a_customers_whole_ledger_and_only_theirs(
    database_url: str,
) -> None:
    from relay.store import open_store
    from relay.store.spend import SpendEntry

    store = await open_store(database_url)
    try:
        ana = [SpendEntry("evt_1", "cus_A", "blind-ana", "EUR", 6000, 1.0),
               SpendEntry("evt_2", "cus_A", "blind-cus_A", "EUR", -1000, 2.0),
               SpendEntry("evt_3", "cus_B", "blind-bo", "EUR", 9000, 3.0)]  # fmt: skip
        assert [await store.add_spend(e) for e in ana] == [True, True, True]
        assert await store.add_spend(ana[0]) is False  # counted once
        await store.set_spend_tier("cus_A", "blind-ana", "base", 4.0)
        assert (await store.spend_of("cus_A")).totals == {"EUR": 5000}
        assert await store.erase_spend(["blind-ana"]) == 3  # both entries and the tier
        assert (await store.spend_of("cus_A")).totals == {}
        assert [c.customer for c in await store.spend_customers()] == ["cus_B"]
    finally:
        await store.close()

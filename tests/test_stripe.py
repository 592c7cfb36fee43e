"""Stripe events through the whole app: signatures as Stripe computes them (`t=…,v1=…`), the
exact PassKit request for each shipped template in both API generations, dedupe, rotation,
and the failure policy (5xx so Stripe retries; 200 `ok: false` when retrying cannot help)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from relay.sandbox import DEMO_PROGRAM_ID, ERROR_SHAPES, SandboxError, State
from relay.store import Store
from relay.stripe.events import sign

from .conftest import SAMPLES, make_settings, mint
from .servers import relay_on_sandbox

pytestmark = pytest.mark.anyio

WHSEC = "whsec_test_0123456789abcdefABCDEF"
OLD_WHSEC = "whsec_old_secret_still_valid_24h"
PROGRAM = "3iGxtXJd7x9fU2yYWcdBvQ"
STRIPE = "/stripe/" + mint("stripe", program_id=PROGRAM, tier_id="base").rsplit("/", 1)[1]
PERSON = {"displayName": "Ana Díaz", "emailAddress": "ana.diaz@example.com"}
META = {"stripeCustomer": "cus_RqW8xZ1aB2", "stripeSubscription": "sub_1QaZ9yLkJ3"}


def sample(name: str) -> bytes:
    return (SAMPLES / "stripe" / f"{name}.json").read_bytes()


def signed(body: bytes, *secrets: str, at: int | None = None) -> dict[str, str]:
    """Stripe-Signature for `body`: one v1 per secret, as Stripe sends while rolling a secret."""
    at = int(time.time()) if at is None else at
    parts = [sign(body, secret, at) for secret in secrets or (WHSEC,)]
    v1s = [part.split(",", 1)[1] for part in parts]
    return {"Stripe-Signature": ",".join([f"t={at}", *v1s]), "Content-Type": "application/json"}


@pytest.fixture
def client(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(make_settings(STRIPE_WEBHOOK_SECRET=f"{WHSEC}, {OLD_WHSEC}"), store=store)


CASES: list[tuple[str, str | None, str | None, Any]] = [
    ("checkout.session.completed", "POST", "/members/member", {
        "programId": PROGRAM, "tierId": "base", "externalId": "cus_RqW8xZ1aB2", "person": PERSON,
        "metaData": {**META, "status": "active"}}),
    ("checkout.session.completed.legacy", "POST", "/members/member", {
        "programId": PROGRAM, "tierId": "silver", "externalId": "CRM-778", "person": PERSON,
        "metaData": {"status": "active"}}),
    ("checkout.session.completed.unpaid", None, None, "payment_status is unpaid"),
    ("invoice.paid", "POST", "/members/member", {
        "programId": PROGRAM, "tierId": "base", "externalId": "cus_RqW8xZ1aB2", "person": PERSON,
        "expiryDate": "2026-12-18T11:06:40Z", "metaData": {**META, "status": "active"}}),
    ("invoice.paid.legacy", "POST", "/members/member", {
        "programId": PROGRAM, "tierId": "base", "externalId": "CRM-900",
        "person": {"displayName": "Bo Berg", "emailAddress": "bo@example.com"},
        "expiryDate": "2026-12-18T11:06:40Z",
        "metaData": {"stripeCustomer": "cus_OldCust01", "stripeSubscription": "sub_1Old",
                     "status": "active"}}),
    ("invoice.paid.one-off", None, None, "not for a subscription"),
    ("invoice.payment_failed", "PUT", "/members/member", {
        "programId": PROGRAM, "externalId": "cus_RqW8xZ1aB2", "metaData": {
            "status": "past_due", "paymentAttempts": "2",
            "nextPaymentAttempt": "2026-11-21T11:06:40Z"}}),
    ("invoice.payment_failed.legacy", "PUT", "/members/member", {
        "programId": PROGRAM, "externalId": "CRM-900", "metaData": {
            "status": "past_due", "paymentAttempts": "1",
            "nextPaymentAttempt": "2026-11-19T11:06:40Z"}}),
    ("customer.subscription.updated", "PUT", "/members/member/tier", {
        "externalMemberId": "cus_RqW8xZ1aB2", "programId": PROGRAM, "tierId": "gold",
        "eventDetails": {"externalEventId": "evt_1SubUpgradeNew01",
                         "notes": "Stripe price price_1Gold"}}),
    ("customer.subscription.updated.legacy", "PUT", "/members/member/tier", {
        "externalMemberId": "CRM-900", "programId": PROGRAM, "tierId": "gold",
        "eventDetails": {"externalEventId": "evt_1SubUpgradeOld01",
                         "notes": "Stripe price price_1Gold"}}),
    ("customer.subscription.updated.renewal", None, None, "price did not change"),
    ("customer.subscription.deleted", "DELETE", "/members/member",
     {"externalId": "cus_RqW8xZ1aB2", "programId": PROGRAM}),
    ("customer.subscription.deleted.legacy", "DELETE", "/members/member",
     {"externalId": "CRM-900", "programId": PROGRAM}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "path", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_each_event_sends_the_exact_passkit_request(
    name: str,
    method: str | None,
    path: str | None,
    expected: Any,
    passkit: respx.MockRouter,
    client: httpx.AsyncClient,
) -> None:
    route = passkit.route().mock(return_value=httpx.Response(200, json={"id": "m1"}))
    body = sample(name)
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 200, answer.text
    if method is None:  # skipped: acknowledged, nothing sent
        assert route.call_count == 0
        assert answer.json()["skipped"] is True and expected in answer.json()["reason"]
        return
    sent = route.calls.last.request
    assert (sent.method, sent.url.path) == (method, path)
    assert json.loads(sent.content) == expected
    assert answer.json()["ok"] is True


async def test_one_event_id_is_processed_once(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    route = passkit.post("/members/member").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    body = sample("checkout.session.completed")
    first = await client.post(STRIPE, content=body, headers=signed(body))
    again = await client.post(STRIPE, content=body, headers=signed(body))  # Stripe's retry
    assert route.call_count == 1
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    outcomes = sorted(d.outcome for d in await store.list_deliveries(source="stripe"))
    assert outcomes == ["duplicate", "ok"]


async def test_rotation_accepts_either_secret(
    passkit: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))
    body = sample("checkout.session.completed")
    both = await client.post(STRIPE, content=body, headers=signed(body, "whsec_new_one", WHSEC))
    assert both.status_code == 200, both.text
    body = sample("invoice.paid")
    old = await client.post(STRIPE, content=body, headers=signed(body, OLD_WHSEC))
    assert old.status_code == 200, old.text


def v0_only(body: bytes) -> dict[str, str]:
    header = signed(body)
    header["Stripe-Signature"] = header["Stripe-Signature"].replace("v1=", "v0=")
    return header


@pytest.mark.parametrize(
    ("headers", "body", "says"),
    [
        (lambda b: signed(b + b" "), None, "does not match"),  # tampered body
        (lambda b: signed(b, "whsec_someone_elses"), None, "does not match"),
        (v0_only, None, "no v1 signature"),
        (lambda b: signed(b, at=int(time.time()) - 301), None, "more than 5 minutes old"),
        (lambda b: {"Content-Type": "application/json"}, None, "no readable Stripe-Signature"),
        (lambda b: {"Stripe-Signature": "garbage"}, None, "no readable Stripe-Signature"),
    ],
    ids=["tampered", "wrong-secret", "v0-only", "stale", "missing", "garbage"],
)
async def test_refused_signatures_are_400_and_never_mark_the_event_seen(
    headers: Callable[[bytes], dict[str, str]],
    body: bytes | None,
    says: str,
    passkit: respx.MockRouter,
    client: httpx.AsyncClient,
    store: Store,
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    body = sample("checkout.session.completed")
    refused = await client.post(STRIPE, content=body, headers=headers(body))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_signature" and says in error["message"]
    assert "STRIPE_WEBHOOK_SECRET" in error["hint"] and WHSEC not in refused.text
    assert route.call_count == 0
    # The genuine delivery of the same event still runs: the forgery marked nothing as seen.
    genuine = await client.post(STRIPE, content=body, headers=signed(body))
    assert genuine.json()["duplicate"] is False and route.call_count == 1
    [failed] = await store.list_deliveries(outcome="failed")
    assert failed.error_code == "invalid_signature" and failed.status == 400


async def test_without_a_secret_stripe_answers_503_naming_the_setting(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(make_settings())
    body = sample("checkout.session.completed")
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_configured"
    assert "STRIPE_WEBHOOK_SECRET" in answer.json()["error"]["message"]


async def test_events_without_a_template_are_ignored(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    body = sample("customer.created")
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 200
    assert answer.json()["ignored"] is True and "stripe/customer.created" in answer.json()["reason"]
    [record] = await store.list_deliveries()
    assert record.outcome == "ignored" and record.request["livemode"] is False


async def test_transient_failure_is_503_and_the_retry_runs_again(
    passkit: respx.MockRouter, client: httpx.AsyncClient, make_client: Callable[..., Any]
) -> None:
    route = passkit.post("/members/member")
    route.side_effect = [httpx.Response(401, json={"code": 16, "message": "bad jwt"}),
                         httpx.Response(200, json={"id": "m1"})]  # fmt: skip
    body = sample("checkout.session.completed")
    down = await client.post(STRIPE, content=body, headers=signed(body))
    assert down.status_code == 502 and down.json()["error"]["code"] == "passkit_auth"
    retried = await client.post(STRIPE, content=body, headers=signed(body))
    assert retried.status_code == 200 and retried.json()["duplicate"] is False
    assert route.call_count == 2


async def test_permanent_failure_is_200_not_ok_and_recorded(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store
) -> None:
    route = passkit.put("/members/member/tier").mock(
        return_value=httpx.Response(400, json={"code": 3, "message": "tierId gold does not exist"})
    )
    body = sample("customer.subscription.updated")
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 200  # Stripe retrying for 3 days would not fix it
    assert answer.json()["ok"] is False
    assert answer.json()["error"]["code"] == "passkit_rejected"
    [record] = await store.list_deliveries()
    assert record.outcome == "failed" and record.error_code == "passkit_rejected"
    assert record.template == "stripe/customer.subscription.updated"
    # Not marked as seen: once the tier exists, a resend from Stripe's dashboard runs again.
    route.mock(return_value=httpx.Response(200, json={"id": "m1"}))
    again = await client.post(STRIPE, content=body, headers=signed(body))
    assert again.json()["ok"] is True and again.json()["duplicate"] is False


@pytest.mark.parametrize("shape", ERROR_SHAPES)  # each shape live PassKit answers in
async def test_events_for_a_member_never_issued_are_ignored_with_a_reason(
    passkit: respx.MockRouter, client: httpx.AsyncClient, store: Store, shape: str
) -> None:
    passkit.delete("/members/member").mock(
        return_value=httpx.Response(404, json=SandboxError(5, "member not found").body(shape))
    )
    body = sample("customer.subscription.deleted")
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 200 and answer.json()["ignored"] is True
    assert "member not found" in answer.json()["reason"]
    [record] = await store.list_deliveries()
    assert record.outcome == "ignored"


async def test_tier_for_price_param_wins(
    passkit: respx.MockRouter, make_client: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    route = passkit.put("/members/member/tier").mock(return_value=httpx.Response(200, json={}))
    client = make_client(make_settings(STRIPE_WEBHOOK_SECRET=WHSEC), store=store)
    token = mint("stripe", program_id=PROGRAM, tier_for_price="price_1Gold=platinum,x=y")
    body = sample("customer.subscription.updated")
    answer = await client.post(
        "/stripe/" + token.rsplit("/", 1)[1], content=body, headers=signed(body)
    )
    assert answer.status_code == 200, answer.text
    assert json.loads(route.calls.last.request.content)["tierId"] == "platinum"


async def test_subscription_lifecycle_against_the_sandbox(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    """Relay and sandbox as real servers: pay → pass issued, upgrade → tier, cancel → gone."""
    url, state = sandbox
    endpoint = (
        "/stripe/" + mint("stripe", program_id=DEMO_PROGRAM_ID, tier_id="base").rsplit("/", 1)[1]
    )

    def member() -> dict[str, Any] | None:
        found = [m for m in state.members.values() if m["externalId"] == "cus_RqW8xZ1aB2"]
        return found[0] if found else None

    with relay_on_sandbox(url, tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC) as relay:
        async with httpx.AsyncClient(base_url=relay, timeout=30) as client:
            for name in ("checkout.session.completed", "customer.subscription.updated",
                         "customer.subscription.deleted"):  # fmt: skip
                body = sample(name)
                answer = await client.post(endpoint, content=body, headers=signed(body))
                assert answer.status_code == 200 and answer.json()["ok"], answer.text
                if name == "checkout.session.completed":
                    issued = member()
                    assert issued is not None and issued["tierId"] == "base"
                    assert issued["person"]["emailAddress"] == "ana.diaz@example.com"
                    assert issued["metaData"]["stripeSubscription"] == "sub_1QaZ9yLkJ3"
                elif name == "customer.subscription.updated":
                    assert member()["tierId"] == "gold"  # type: ignore[index]
    assert member() is None


@pytest.mark.parametrize("duplicates", ["conflict", "invalid", "internal"])
async def test_invoice_paid_after_checkout_updates_the_member_however_passkit_refuses(
    duplicates: str, sandbox: tuple[str, State], tmp_path: Path
) -> None:
    """invoice.paid upserts a member checkout.session.completed enrolled: PassKit refuses the
    create (409, 400 or 500, as it might), the relay looks the member up and updates it."""
    url, state = sandbox
    assert httpx.post(f"{url}/_sandbox/faults", json={"duplicates": duplicates}).is_success
    endpoint = (
        "/stripe/" + mint("stripe", program_id=DEMO_PROGRAM_ID, tier_id="base").rsplit("/", 1)[1]
    )
    # A duplicate answered 500 is retried to the end of the budget before the lookup.
    budget = {"RELAY_RETRY_BUDGET": "1"} if duplicates == "internal" else {}
    with relay_on_sandbox(url, tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC, **budget) as relay:
        async with httpx.AsyncClient(base_url=relay, timeout=30) as client:
            for name in ("checkout.session.completed", "invoice.paid"):
                body = sample(name)
                answer = await client.post(endpoint, content=body, headers=signed(body))
                assert answer.status_code == 200 and answer.json()["ok"], answer.text
    assert answer.json()["created"] is False
    [member] = state.members.values()
    assert member["externalId"] == "cus_RqW8xZ1aB2"
    assert member["expiryDate"] == "2026-12-18T11:06:40Z"


def stripe_endpoint(**params: str) -> str:
    return "/stripe/" + mint("stripe", **params).rsplit("/", 1)[1]


@pytest.mark.parametrize("name", ["invoice.paid", "invoice.paid.legacy"])
async def test_invoice_paid_for_a_new_subscriber_joins_the_tier_of_its_price(
    name: str, passkit: respx.MockRouter, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    """Both samples pay price_1Gold: in `lines.data[].pricing.price_details.price` (2025-03-31
    and later) and in `lines.data[].price.id` (before)."""
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    client = make_client(make_settings(STRIPE_WEBHOOK_SECRET=WHSEC))
    prices = "price_9Other=silver, price_1Gold=Platinum"
    endpoint = stripe_endpoint(program_id=PROGRAM, tier_id="base", tier_for_price=prices)
    body = sample(name)
    answer = await client.post(endpoint, content=body, headers=signed(body))
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    assert json.loads(route.calls.last.request.content)["tierId"] == "platinum"


@pytest.mark.parametrize(
    ("line_items", "metadata", "tier"),
    [
        ({"object": "list", "data": [{"price": {"id": "price_1Gold"}}]}, {}, "platinum"),
        ({"object": "list", "data": [{"price": {"id": "price_unmapped"}}]}, {}, "base"),
        (None, {}, "base"),  # not expanded: the default tier
        ({"data": [{"price": {"id": "price_1Gold"}}]}, {"passkit_tier": "Silver"}, "silver"),
    ],
    ids=["mapped", "unmapped", "no-line-items", "metadata-wins"],
)
async def test_checkout_joins_the_tier_of_a_mapped_price_when_the_session_lists_it(
    line_items: dict[str, Any] | None,
    metadata: dict[str, str],
    tier: str,
    passkit: respx.MockRouter,
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    client = make_client(make_settings(STRIPE_WEBHOOK_SECRET=WHSEC))
    endpoint = stripe_endpoint(program_id=PROGRAM, tier_id="base",
                               tier_for_price="price_1Gold=platinum")  # fmt: skip
    event = json.loads(sample("checkout.session.completed"))
    event["data"]["object"]["metadata"] = metadata
    if line_items is not None:
        event["data"]["object"]["line_items"] = line_items
    body = json.dumps(event).encode()
    answer = await client.post(endpoint, content=body, headers=signed(body))
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    assert json.loads(route.calls.last.request.content)["tierId"] == tier


async def test_invoice_paid_moves_an_existing_subscriber_to_the_tier_of_its_price(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    """checkout.session.completed issued the pass in the default tier; the invoice for the
    mapped price moves it (an unmapped price would leave the tier alone)."""
    url, state = sandbox
    endpoint = stripe_endpoint(program_id=DEMO_PROGRAM_ID, tier_id="base",
                               tier_for_price="price_1Gold=gold")  # fmt: skip
    with relay_on_sandbox(url, tmp_path, STRIPE_WEBHOOK_SECRET=WHSEC) as relay:
        async with httpx.AsyncClient(base_url=relay, timeout=30) as client:
            for name, tier in (("checkout.session.completed", "base"), ("invoice.paid", "gold")):
                body = sample(name)
                answer = await client.post(endpoint, content=body, headers=signed(body))
                assert answer.status_code == 200 and answer.json()["ok"], answer.text
                [member] = state.members.values()
                assert member["tierId"] == tier

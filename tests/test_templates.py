"""Every shipped template renders the exact PassKit request from a realistic flat payload."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.access.tokens import Hook
from relay.delivery.pipeline import Relay
from relay.delivery.templating import SkipDelivery, TemplateLibrary
from relay.forms.fields import FieldList, FieldValue
from relay.passkit.client import PassKitClient
from relay.settings import Settings
from relay.stripe.events import context

from .cases import CASES, PROGRAM, TICKETS, Case
from .conftest import FROZEN_NOW, ROOT, SAMPLES

TICKET_PARAMS = TICKETS


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(ROOT / "templates")


def test_every_shipped_template_loads_and_is_covered(library: TemplateLibrary) -> None:
    assert library.problems == []
    hook_templates = [n for n in library.names() if not n.startswith("stripe/")]
    assert sorted(c.template for c in CASES) == hook_templates


def test_every_field_and_param_is_documented(library: TemplateLibrary) -> None:
    for template in library.templates.values():
        assert template.summary, template.name
        for spec in template.fields.values():
            assert spec.help and spec.example, f"{template.name}: {spec.name}"
        for param in template.params.values():
            assert param.help, f"{template.name}: {param.name}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.template)
def test_template_renders_exact_request(
    case: Case, library: TemplateLibrary, settings: Settings
) -> None:
    relay = Relay(library=library, client=PassKitClient(settings), clock=lambda: FROZEN_NOW)
    fields = {k: FieldValue(v, k) for k, v in case.fields.items()}
    request = relay.prepare(Hook("hk_x", case.template, case.params), fields, list(fields))
    assert (request.method, request.path) == (case.method, case.path)
    assert request.json == case.json


def _prepare(library: TemplateLibrary, settings: Settings, template: str,
             params: dict[str, str], fields: dict[str, Any], **extra: Any) -> Any:  # fmt: skip
    relay = Relay(library=library, client=PassKitClient(settings), clock=lambda: FROZEN_NOW)
    values = {k: FieldValue(v, k) if isinstance(v, str) else v for k, v in fields.items()}
    return relay.prepare(Hook("hk_x", template, params), values, list(values), extra or None)


def test_ticket_redeem_sends_one_identity(library: TemplateLibrary, settings: Settings) -> None:
    # PassKit's TicketId is a oneof: "should not have multiple id oneof fields".
    params = {"production_id": "6aA8f7RdvnBVpmZDWAx3Xt"}
    both = {"ticket_id": "1cZ8Xm0dhd5xTqM5TZJXm4", "ticket_number": "T-0001"}
    request = _prepare(library, settings, "ticket-redeem", params, both)
    assert request.json == {"ticket": {"ticketId": "1cZ8Xm0dhd5xTqM5TZJXm4"}}
    request = _prepare(library, settings, "ticket-redeem", params, {"ticket_number": "T-0001"})
    assert request.json == {
        "ticket": {
            "ticketNumber": {"productionId": params["production_id"], "ticketNumber": "T-0001"}
        }
    }


@pytest.mark.parametrize("verb", ["earn", "burn"])
@pytest.mark.parametrize("points", ["0", "0.00", " 0 "])
def test_zero_points_are_skipped_not_sent(
    verb: str, points: str, library: TemplateLibrary, settings: Settings
) -> None:
    # PassKit's EarnBurnPointsRequest needs points > 0; a purchase worth 0 points is no error.
    fields = {"external_id": "CRM-1", "points": points}
    with pytest.raises(SkipDelivery, match="0 points: nothing to"):
        _prepare(library, settings, f"member-points-{verb}", PROGRAM, fields)
    sent = _prepare(library, settings, f"member-points-{verb}", PROGRAM, {**fields, "points": "1"})
    assert sent.json["points"] == 1.0


@pytest.mark.parametrize(
    ("price", "cents"),
    [("45.00", 4500), ("19.99", 1999), ("€0.29", 29), ("1,234.56", 123456), ("0.07", 7),
     ("12,50 €", 1250), ("0.1", 10), ("4.35", 435), ("8.2", 820)],
)  # fmt: skip
def test_ticket_price_is_sent_in_whole_cents(
    price: str, cents: int, library: TemplateLibrary, settings: Settings
) -> None:
    # PassKit's faceValue.amount is "the ticket amount in cents".
    fields = {"ticket_number": "T-1", "event_start": "2026-12-01 19:30", "price": price}
    request = _prepare(library, settings, "ticket-issue", TICKET_PARAMS, fields)
    amount = request.json["faceValue"]["amount"]
    assert amount == cents and isinstance(amount, int)


def _meta_values(value: Any) -> list[Any]:
    """Every value of every metaData object anywhere in a rendered request."""
    if isinstance(value, list):
        return [v for item in value for v in _meta_values(item)]
    if not isinstance(value, dict):
        return []
    found = list(value["metaData"].values()) if isinstance(value.get("metaData"), dict) else []
    return found + [v for key, item in value.items() if key != "metaData"
                    for v in _meta_values(item)]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.template)
def test_every_meta_value_is_text(case: Case, library: TemplateLibrary, settings: Settings) -> None:
    # metaData is PassKit's map<string,string>: numbers, yes/no and lists arrive as text.
    template = library.get(case.template)
    assert template is not None
    extra = {"meta_visits": "3", "meta_vip": "true", "meta_tags": FieldList(
        [FieldValue("a", "meta_tags"), FieldValue("b", "meta_tags")], "meta_tags")}  # fmt: skip
    fields = {**case.fields, **(extra if "meta_*" in template.fields else {})}
    fields.pop("mobile", None)  # not what this test is about
    request = _prepare(library, settings, case.template, case.params, fields)
    values = _meta_values(request.json)
    assert all(isinstance(v, str) for v in values), values
    if "meta_*" in template.fields:
        assert {"3", "true", "a, b"} <= set(values)


def _stripe_event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SAMPLES / "stripe" / f"{name}.json").read_text())
    event["data"]["object"].update(changes)
    return event


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("checkout.session.completed", {}),
        ("checkout.session.completed",
         {"customer": {"id": "cus_RqW8xZ1aB2", "object": "customer"},
          "subscription": {"id": "sub_1QaZ9yLkJ3", "object": "subscription"},
          "metadata": {"passkit_external_id": "CRM-1"}}),
        ("invoice.paid", {}),
        ("invoice.paid.legacy",
         {"customer": {"id": "cus_OldCust01", "object": "customer"},
          "subscription": {"id": "sub_1Old", "object": "subscription"}}),
        ("invoice.payment_failed", {}),
        ("invoice.payment_failed", {"attempt_count": None}),
    ],
)  # fmt: skip
def test_stripe_meta_values_are_text(
    name: str, changes: dict[str, Any], library: TemplateLibrary, settings: Settings
) -> None:
    # An expanded customer or subscription (an object, not its id) is written as its id.
    event = _stripe_event(name, **changes)
    template = "stripe/" + event["type"]
    params = {"program_id": "p1", "tier_id": "base"}
    request = _prepare(library, settings, template, params, {}, **context(event))
    values = _meta_values(request.json)
    assert values and all(isinstance(v, str) for v in values), values
    assert not any(v.startswith("{") for v in values)
    if changes.get("customer"):
        assert request.json["metaData"]["stripeCustomer"] == changes["customer"]["id"]
        assert request.json["metaData"]["stripeSubscription"] == changes["subscription"]["id"]
    if "attempt_count" in changes:
        assert "paymentAttempts" not in request.json["metaData"]


@pytest.mark.parametrize(
    "value",
    [None, "", 'say "hi"\n', "Díaz ✓", FieldValue("Ana", "first_name"), True, 0, 2.5,
     {"a": [1, None]}, ["x"]],
)  # fmt: skip
def test_values_are_written_into_the_json_exactly_as_json_writes_them(value: Any) -> None:
    # The finalizer's shortcuts for text and nothing write what the JSON encoder would.
    from relay.delivery.templating import _json_out

    assert _json_out(value) == json.dumps(value, ensure_ascii=False)


def test_nulls_and_objects_left_empty_are_pruned_at_every_depth() -> None:
    from relay.delivery.templating import _prune

    body = {"a": None, "b": {"c": None}, "d": {"e": {"f": None}, "g": 0}, "h": [None, {}, 1],
            "i": "", "j": False, "k": {}}  # fmt: skip
    assert _prune(body) == {"d": {"g": 0}, "h": [{}, 1], "i": "", "j": False}

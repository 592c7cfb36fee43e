"""Every PassKit event family through a PassKit events URL: membership and coupon events
(PassKit's MembershipEventId, CouponEventId) forwarded flat where the URL opts in, never to a URL
minted before they were; custom fields as meta_*, points as numbers, the pass status, the wallet
and the last install; events the relay does not know yet. Real relay, real receiver over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from google.protobuf import json_format

from relay.access.tokens import Hook, HookSigner
from relay.delivery.templating import TemplateLibrary
from relay.events.flatten import ALL_EVENT_NAMES, FAMILY_EVENTS, flatten, sentence, wanted
from relay.hooks.minting import mint

from .conftest import ROOT, SECRET_KEY
from .test_passkit_events import (  # noqa: F401 - receiver and relay are fixtures
    BODY,
    Receiver,
    events_path,
    receiver,
    relay,
    send,
    wait_for,
)

PASS = json.loads(BODY)["pass"]


def new_events_path(forward_to: str, events: str = "") -> str:
    """A URL as minting makes one now (`v=2`)."""
    params = {"forward_to": forward_to, "v": "2"} | ({"events": events} if events else {})
    hook = Hook(id="hk_passkit0002", template="passkit-events", params=params)
    return "/passkit/" + HookSigner([SECRET_KEY]).mint(hook)


def body(event: str, **changes: Any) -> bytes:
    return json.dumps({"event": event, "pass": PASS | changes}).encode()


def test_the_family_names_are_passkits_own() -> None:
    """Every name the relay knows is a value of PassKit's enums in its installed SDK."""
    from passkit.io.common import integration_pb2

    enums = integration_pb2.DESCRIPTOR.enum_types_by_name
    published = {v.name for n in ("MembershipEventId", "CouponEventId") for v in enums[n].values}
    assert set(FAMILY_EVENTS) == published - {"MEMBER_EVENT_NONE", "COUPON_EVENT_NONE"}
    # One payload for every family: {event, pass}.
    payload = integration_pb2.SinkSubscriptionPayload()
    json_format.Parse(body("COUPON_EVENT_REDEEMED"), payload, ignore_unknown_fields=False)
    assert payload.event == "COUPON_EVENT_REDEEMED"


def test_minting_adds_the_version_and_takes_namespaced_events() -> None:
    library = TemplateLibrary(ROOT / "templates")
    params = {"forward_to": "https://hooks.zapier.com/hooks/catch/1/a/",
              "events": "member.enrolled,coupon.redeemed,installed"}  # fmt: skip
    hook, _, _ = mint(HookSigner([SECRET_KEY]), library, "passkit-events", params, "https://r.x")
    assert hook.params["v"] == "2"


def test_new_keys_custom_fields_numbers_status_wallet_last_install() -> None:
    metadata = {"status": "PASS_INSTALLED", "firstInstalledAt": "2026-01-02T00:00:00Z",
                "lastInstalledAt": "2026-11-23T12:00:00Z",
                "lifecycleEvents": ["RENDERED", "INSTALLED_APPLE", "UNINSTALLED_APPLE",
                                    "INSTALLED_GOOGLE"]}  # fmt: skip
    record = PASS["recordData"] | {"meta.shoeSize": "44", "members.member.points": "5"}
    event = json.loads(body("PASS_EVENT_INSTALLED", metadata=metadata, recordData=record))
    flat = flatten(event, event_id="e", received_at="t", typed=True)
    assert flat["points"] == 5 and flat["meta_shoeSize"] == "44"  # custom fields stay text
    assert flat["meta_favouriteClass"] == "Spin"
    assert (flat["pass_status"], flat["wallet"]) == ("installed", "Google")  # the re-install
    assert flat["installed_at"] == "2026-01-02T00:00:00Z"  # as before: the first install
    assert flat["last_installed_at"] == "2026-11-23T12:00:00Z"
    assert flat["sample"] is False
    old = flatten(event, event_id="e", received_at="t")  # a URL minted before: text, as it was
    assert old["points"] == "5" and old["wallet"] == "Google"


@pytest.mark.parametrize(
    ("raw", "name"), [*FAMILY_EVENTS.items(), ("PASS_EVENT_INSTALLED", "installed")]
)
def test_each_family_event_is_named_by_its_name(raw: str, name: str) -> None:
    flat = flatten(json.loads(body(raw)), event_id="e", received_at="t", typed=True)
    assert flat["event"] == name and name in ALL_EVENT_NAMES
    assert wanted(flat, name, every_family=True) and wanted(flat, "", every_family=True)
    assert wanted(flat, "", every_family=False) == (name == "installed")  # old URLs: 6 only
    assert sentence(flat).endswith("Mara Quist")


def test_opted_in_membership_and_coupon_events_are_forwarded_flat(
    relay: str,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    url = relay + new_events_path(receiver.url, events="member.enrolled,coupon.redeemed")
    coupon = body("COUPON_EVENT_REDEEMED", protocol="SINGLE_USE_COUPON", classId="camp1",
                  externalId="CPN-9")  # fmt: skip
    for each, method in ((body("MEMBER_EVENT_ENROLLED"), "POST"), (coupon, "PUT")):
        answer = send(url, body=each, method=method)
        assert answer.status_code == 200 and answer.json()["queued"] is True, answer.text
    skipped = send(url, body=body("COUPON_EVENT_CREATED"), method="POST")
    assert skipped.json()["ignored"] is True
    wait_for(lambda: len(receiver.got) == 2)
    got = {each["event"]: each for each in receiver.got}
    assert set(got) == {"member.enrolled", "coupon.redeemed"}
    assert got["member.enrolled"]["email"] == "mara@example.com"
    assert got["member.enrolled"]["points"] == 30  # a number
    assert got["member.enrolled"]["meta_favouriteClass"] == "Spin"
    assert (got["coupon.redeemed"]["campaign_id"], got["coupon.redeemed"]["external_id"]) == (
        "camp1", "CPN-9")  # fmt: skip
    assert all(each["sample"] is False and not isinstance(v, (dict, list))
               for each in receiver.got for v in each.values())  # fmt: skip


def test_an_old_url_keeps_exactly_the_six_pass_events(
    relay: str,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    url = relay + events_path(receiver.url)  # no v: minted before the families were taken
    for raw in ("MEMBER_EVENT_ENROLLED", "COUPON_EVENT_REDEEMED"):
        answer = send(url, body=body(raw), method="POST")
        assert answer.status_code == 200 and answer.json()["ignored"] is True
        assert "make a new URL" in answer.json()["reason"]
    assert send(url).json()["queued"] is True  # a pass event still goes
    wait_for(lambda: receiver.got)
    time.sleep(0.5)
    assert [each["event"] for each in receiver.got] == ["installed"]
    assert receiver.got[0]["points"] == "30"  # its numbers as text, as before


def test_an_unknown_event_goes_with_its_top_level_keys_where_all_are_asked(
    relay: str,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    surprise = json.dumps({"event": "TICKET_EVENT_SCANNED", "gate": "North",
                           "count": 2, "nested": {"x": 1}}).encode()  # fmt: skip
    answer = send(relay + new_events_path(receiver.url), body=surprise, method="POST")
    assert answer.status_code == 200 and answer.json()["event"] == "ticket_event_scanned"
    picky = send(relay + new_events_path(receiver.url, "installed"), body=surprise, method="POST")
    assert picky.json()["ignored"] is True
    wait_for(lambda: receiver.got)
    got = receiver.got[0]
    assert (got["event"], got["gate"], got["count"], got["sample"]) == (
        "ticket_event_scanned", "North", "2", False)  # fmt: skip
    assert "nested" not in got
    nameless = send(relay + new_events_path(receiver.url), body=b'{"gate": "North"}')
    assert nameless.status_code == 400  # names no event and carries no pass: refused, saying so

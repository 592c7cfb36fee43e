"""Single-use coupon operations (passkit-api.md §4): issue, redeem once, void, look up.

A coupon is found by `id` or by `externalId` + `campaignId`; `externalId` is unique in the
campaign. Redeeming is one-way ("cannot be used again"), so a second redeem is a failed
precondition. Voiding deletes the record: its pass is invalidated and it can no longer be found.
"""

from __future__ import annotations

from relay.sandbox import proto
from relay.sandbox.errors import invalid, not_found, precondition
from relay.sandbox.faults import duplicate
from relay.sandbox.messages import COUPON
from relay.sandbox.state import Record, State, required


def find_coupon(state: State, message: Record, campaign_key: str = "campaignId") -> Record:
    if message.get("id"):
        coupon = state.coupons.get(message["id"])
        if coupon is None:
            raise not_found("coupon")
        return coupon
    if message.get("externalId"):
        if not message.get(campaign_key):
            raise invalid(f"{campaign_key} is required when externalId is set")
        coupon_id = state.coupon_ids.get((message[campaign_key], message["externalId"]))
        if coupon_id is None:
            raise not_found("coupon")
        return state.coupons[coupon_id]
    raise invalid(f"id or externalId and {campaign_key} are required")


def create(state: State, message: Record) -> Record:
    required(message, "campaignId", "offerId")
    if message["campaignId"] not in state.campaigns:
        raise not_found("campaign")
    offer = state.offers.get(message["offerId"])
    if offer is None or offer["campaignId"] != message["campaignId"]:
        raise not_found("offer")
    key = (message["campaignId"], message.get("externalId", ""))
    if key[1] and key in state.coupon_ids:
        raise duplicate(state.faults.duplicates, "coupon", "externalId", key[1])
    coupon = state.created(message)
    coupon.pop("redemptionDetails", None)
    coupon["status"] = "UNREDEEMED"  # read-only: a new coupon is never born redeemed
    state.coupons[coupon["id"]] = coupon
    if key[1]:
        state.coupon_ids[key] = coupon["id"]
    return {"id": coupon["id"]}


def redeem(state: State, message: Record) -> Record:
    coupon = find_coupon(state, message)
    if coupon["status"] == "REDEEMED":
        raise precondition("coupon has already been redeemed")
    details = dict(message.get("redemptionDetails", {}))
    details["redemptionDate"] = state.stamp()  # system-set, whatever the client sent
    coupon.update(status="REDEEMED", redemptionDetails=details)
    state.touch(coupon)
    return {"id": coupon["id"]}


def void(state: State, message: Record) -> Record:
    coupon = find_coupon(state, message)
    del state.coupons[coupon["id"]]
    state.coupon_ids.pop((coupon["campaignId"], coupon.get("externalId", "")), None)
    return {}


def get_by_id(state: State, message: Record) -> Record:
    return proto.render(COUPON, find_coupon(state, message))


def get_by_external_id(state: State, message: Record) -> Record:
    required(message, "couponCampaignId", "externalId")
    return proto.render(COUPON, find_coupon(state, message, "couponCampaignId"))

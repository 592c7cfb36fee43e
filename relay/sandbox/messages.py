"""The PassKit messages the sandbox speaks: PassKit's own definitions, from the contract file
(relay/passkit/passkit_contract.json, generated from PassKit's SDK by scripts/passkit-contract).

Nothing here is written from memory: a field, a oneof or an enum number the sandbox knows is one
PassKit publishes, so a request the sandbox accepts is one PassKit's gateway parses, and a record
it renders has PassKit's fields (unset ones as their zero values).
"""

from __future__ import annotations

from relay.passkit.contract import enum_numbers
from relay.sandbox.proto import contract_message as _m

PROTOCOL_NUMBERS = enum_numbers("io.PassProtocol")

PERSON = _m("io.Person")
MEMBER = _m("members.Member")
MEMBER_OUT = MEMBER
MEMBER_POINTS = _m("members.MemberPoints")
EARN_BURN = _m("members.EarnBurnPointsRequest")
SET_POINTS = _m("members.SetPointsRequest")
CHANGE_TIER = _m("members.ChangeTierRequest")
CHECK_IN_OUT = _m("members.MemberCheckInOutRequest")
MEMBER_EVENT = _m("members.MemberEvent")
EVENT_MEMBER = _m("members.MemberMininmal")  # sic: PassKit's name
PROGRAM = _m("members.Program")
TIER = _m("members.Tier")
COUPON = _m("single_use_coupons.Coupon")
CAMPAIGN = _m("single_use_coupons.CouponCampaign")
OFFER = _m("single_use_coupons.CouponOffer")
PRODUCTION = _m("event_tickets.Production")
VENUE = _m("event_tickets.Venue")
TICKET_TYPE = _m("event_tickets.TicketType")
EVENT = _m("event_tickets.Event")
ISSUE_TICKET = _m("event_tickets.IssueTicketRequest")
TICKET = _m("event_tickets.Ticket")
REDEEM_TICKET = _m("event_tickets.RedeemTicketRequest")
EMAIL = _m("io.EmailDistributionRequest")

"""The PassKit messages the sandbox speaks, by JSON field name (passkit-api.md §3–§6, App. A).

Only the fields listed in the reference are declared; anything else a client sends is dropped,
as grpc-gateway does. Read-only fields (`id`, `created`, `status`, …) are declared so records
render with them, but operations never take them from a request.
"""

from __future__ import annotations

from relay.sandbox.proto import Field, Message, enum, msg, repeated

S, B, F, D = "string", "bool", "float", "double"
TS, MAP, STRUCT = "timestamp", "map", "struct"
PROTOCOL_NUMBERS = {"MEMBERSHIP": 100, "SINGLE_USE_COUPON": 101, "EVENT_TICKETING": 102}

DATE = msg("io.Date", year="int32", month="int32", day="int32")
PERSON = msg(
    "io.Person",
    surname=S,
    forename=S,
    otherNames=repeated(S),
    salutation=S,
    suffix=S,
    displayName=S,
    gender=enum("NOT_KNOWN", "MALE", "FEMALE"),
    dateOfBirth=DATE,
    emailAddress=S,
    mobileNumber=S,
    externalId=S,
)
_EVENT_FIELDS: dict[str, Field | str | Message] = {
    "address": S,
    "lat": D,
    "lon": D,
    "alt": D,
    "externalEventId": S,
    "externalDeviceId": S,
    "externalServiceId": S,
    "externalUserId": S,
    "metaData": MAP,
    "notes": S,
}
EVENT_DETAILS = msg("members.EventDetails", **_EVENT_FIELDS)
_STAMPS: dict[str, Field | str | Message] = {"created": TS, "updated": TS}

MEMBER_STATUS = enum("ENROLLED", "ACTIVE", "CHECKED_IN", "EXPIRED", "CHECKED_OUT", "DELETED")
MEMBER = msg(
    "members.Member",
    id=S,
    externalId=S,
    groupingIdentifier=S,
    programId=S,
    tierId=S,
    person=PERSON,
    metaData=MAP,
    optOut=B,
    points=F,
    secondaryPoints=F,
    tierPoints="uint32",
    expiryDate=TS,
    status=MEMBER_STATUS,
    profileImage=S,
    passOverrides=STRUCT,
    operation=enum("OPERATION_PATCH", "OPERATION_PUT"),
    currentTierAwarded=TS,
    currentTierExpires=TS,
    **_STAMPS,
)
MEMBER_OUT = msg("members.Member", **{k: v for k, v in MEMBER.fields.items() if k != "operation"})
_POINTS: dict[str, Field | str | Message] = {
    "id": S,
    "externalId": S,
    "programId": S,
    "points": F,
    "secondaryPoints": F,
    "tierPoints": "uint32",
}
MEMBER_POINTS = msg("members.MemberPoints", **_POINTS)
EARN_BURN = msg("members.EarnBurnPointsRequest", **_POINTS, eventDetails=EVENT_DETAILS, tierId=S)
SET_POINTS = msg(
    "members.SetPointsRequest",
    **_POINTS,
    eventDetails=EVENT_DETAILS,
    tierId=S,
    resetPoints=B,
    resetSecondaryPoints=B,
    resetTierPoints=B,
)
CHANGE_TIER = msg(
    "members.ChangeTierRequest",
    memberId=S,
    externalMemberId=S,
    programId=S,
    tierId=S,
    eventDetails=EVENT_DETAILS,
)
CHECK_IN_OUT = msg(
    "members.MemberCheckInOutRequest",
    memberId=S,
    externalMemberId=S,
    programId=S,
    **_EVENT_FIELDS,
)
EVENT_MEMBER = msg(
    "members.Member",
    id=S,
    externalId=S,
    groupingIdentifier=S,
    tierId=S,
    programId=S,
    person=PERSON,
)
MEMBER_EVENT = msg(
    "members.MemberEvent",
    id=S,
    member=EVENT_MEMBER,
    eventType=enum(
        "EVENT_MEMBER_CHECKED_IN",
        "EVENT_MEMBER_CHECKED_OUT",
        "EVENT_MEMBER_VERIFIED",
        "EVENT_MEMBER_POINTS_EARNED",
        "EVENT_MEMBER_POINTS_BURNED",
        "EVENT_MEMBER_POINTS_SET",
        "EVENT_MEMBER_TIER_CHANGED",
    ),
    address=S,
    lat=D,
    lon=D,
    alt=D,
    externalId=S,
    externalUserId=S,
    externalDeviceId=S,
    externalServiceId=S,
    metaData=MAP,
    notes=S,
    date=TS,
    retainedUntilDate=TS,
    created=TS,
)
PROJECT_STATUS = Field(
    "enum",
    repeated=True,
    enum={
        n: i
        for i, n in enumerate(
            (
                "PROJECT_DRAFT",
                "PROJECT_PUBLISHED",
                "PROJECT_ACTIVE_FOR_OBJECT_CREATION",
                "PROJECT_DISABLED_FOR_OBJECT_CREATION",
            )
        )
    },
)
PROGRAM = msg("members.Program", id=S, name=S, status=PROJECT_STATUS, **_STAMPS)
TIER = msg(
    "members.Tier",
    id=S,
    programId=S,
    name=S,
    tierIndex="uint32",
    pointsOverdrawn=B,
    secondaryPointsOverdrawn=B,
    timezone=S,
    **_STAMPS,
)

REDEMPTION = msg(
    "single_use_coupons.RedemptionDetails",
    redemptionDate=TS,
    redemptionCode=S,
    lat=D,
    lon=D,
    alt=D,
    redemptionSource=S,
    redemptionReference=S,
    transactionReference=S,
    transactionAmount=D,
    metaData=MAP,
)
COUPON = msg(
    "single_use_coupons.Coupon",
    id=S,
    externalId=S,
    offerId=S,
    campaignId=S,
    person=PERSON,
    metaData=MAP,
    sku=S,
    optOut=B,
    status=enum("UNREDEEMED", "REDEEMED"),
    expiryDate=TS,
    redemptionDetails=REDEMPTION,
    passOverrides=STRUCT,
    **_STAMPS,
)
CAMPAIGN = msg("single_use_coupons.CouponCampaign", id=S, name=S, status=PROJECT_STATUS, **_STAMPS)
OFFER = msg(
    "single_use_coupons.CouponOffer",
    id=S,
    campaignId=S,
    offerTitle=S,
    offerShortTitle=S,
    offerDetails=S,
    offerFinePrint=S,
    beforeRedeemPassTemplateId=S,
    **_STAMPS,
)

PRODUCTION = msg("event_tickets.Production", id=S, name=S, uid=S, **_STAMPS)
VENUE = msg("event_tickets.Venue", id=S, name=S, uid=S, address=S, timezone=S, **_STAMPS)
TICKET_TYPE = msg("event_tickets.TicketType", id=S, productionId=S, name=S, uid=S, **_STAMPS)
_DATES: dict[str, Field | str | Message] = {
    "scheduledStartDate": TS,
    "doorsOpen": TS,
    "endDate": TS,
    "relevantDate": TS,
}
EVENT = msg("event_tickets.Event", id=S, production=PRODUCTION, venue=VENUE, **_DATES, **_STAMPS)
EVENT_REF = msg("event_tickets.EventRequest", productionId=S, venueId=S, **_DATES)
SEAT = msg("event_tickets.Seat", section=S, row=S, seat=S, gate=S, entrance=S)
FACE_VALUE = msg("io.FaceValue", amount=D, currency=S)
TICKET_REDEMPTION = msg(
    "event_tickets.RedemptionDetails",
    redemptionDate=TS,
    redemptionSource=S,
    redemptionReference=S,
    lat=D,
    lon=D,
    alt=D,
    metaData=MAP,
)
_TICKET_COMMON: dict[str, Field | str | Message] = {
    "ticketNumber": S,
    "orderNumber": S,
    "barcodeContents": S,
    "seatInfo": SEAT,
    "faceValue": FACE_VALUE,
    "person": PERSON,
    "metaData": MAP,
    "expiryDate": TS,
    "passOverrides": STRUCT,
}
ISSUE_TICKET = msg(
    "event_tickets.IssueTicketRequest",
    ticketTypeId=S,
    eventId=S,
    event=EVENT_REF,
    optOut=B,
    **_TICKET_COMMON,
)
TICKET = msg(
    "event_tickets.Ticket",
    id=S,
    ticketType=TICKET_TYPE,
    event=EVENT,
    **_TICKET_COMMON,
    optOut=enum("OFF", "ON"),
    status=enum("ISSUED", "REDEEMED"),
    redemptionDetails=TICKET_REDEMPTION,
    **_STAMPS,
)
TICKET_NUMBER = msg("event_tickets.TicketNumber", productionId=S, ticketNumber=S)
TICKET_ID = msg("event_tickets.TicketId", ticketId=S, ticketNumber=TICKET_NUMBER)
REDEEM_TICKET = msg(
    "event_tickets.RedeemTicketRequest", ticket=TICKET_ID, redemptionDetails=TICKET_REDEMPTION
)

EMAIL = msg(
    "io.EmailRequest",
    id=S,
    externalId=S,
    classId=S,
    protocol=enum(*PROTOCOL_NUMBERS, numbers=PROTOCOL_NUMBERS),
    alternativeEmail=S,
)

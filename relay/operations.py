"""The PassKit operations the relay can perform, each with its HTTP route and request model.

Field names, paths and methods follow PassKit's REST gateway (see shared/reference/passkit-api.md
§3–§6). A template renders only the JSON body; the operation decides how it travels: which
method, which path (path parameters are taken out of the body), and whether a body is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from relay.errors import InvalidRequest
from relay.schema import (
    Bool,
    DateParts,
    Enum,
    ListOf,
    Num,
    Obj,
    Spec,
    Str,
    StrMap,
    Timestamp,
    validate,
)

TEXT = Str()
NUMBER = Num()
NON_NEGATIVE = Num(minimum=0)
META = StrMap()

PERSON = Obj(
    fields={
        "forename": TEXT,
        "surname": TEXT,
        "otherNames": ListOf(TEXT),
        "salutation": TEXT,
        "suffix": TEXT,
        "displayName": TEXT,
        "gender": Enum(names=("NOT_KNOWN", "MALE", "FEMALE")),
        "dateOfBirth": DateParts(),
        "emailAddress": TEXT,
        "mobileNumber": TEXT,
        "externalId": TEXT,
    }
)
EVENT_FIELDS: dict[str, Spec] = {
    "address": TEXT,
    "lat": NUMBER,
    "lon": NUMBER,
    "alt": NUMBER,
    "externalEventId": TEXT,
    "externalDeviceId": TEXT,
    "externalServiceId": TEXT,
    "externalUserId": TEXT,
    "metaData": META,
    "notes": TEXT,
}
EVENT_DETAILS = Obj(fields=EVENT_FIELDS)
MEMBER_ID = (("id",), ("externalId", "programId"))
MEMBER_REF = (("memberId",), ("externalMemberId", "programId"))
COUPON_ID = (("id",), ("externalId", "campaignId"))

MEMBER_FIELDS: dict[str, Spec] = {
    "id": TEXT,
    "externalId": TEXT,
    "groupingIdentifier": TEXT,
    "programId": TEXT,
    "tierId": TEXT,
    "person": PERSON,
    "metaData": META,
    "optOut": Bool(),
    "points": NUMBER,
    "secondaryPoints": NUMBER,
    "tierPoints": Num(minimum=0, integer=True),
    "expiryDate": Timestamp(),
    "status": Enum(names=("ENROLLED", "ACTIVE", "CHECKED_IN", "EXPIRED", "CHECKED_OUT", "DELETED")),
    "profileImage": TEXT,
    "operation": Enum(names=("OPERATION_PATCH", "OPERATION_PUT")),
}
NEW_MEMBER = Obj(fields=MEMBER_FIELDS, required=("programId", "tierId", "externalId"))
MEMBER_CHANGE = Obj(fields=MEMBER_FIELDS, identity=MEMBER_ID)
MEMBER_KEY = Obj(fields={k: TEXT for k in ("id", "externalId", "programId")}, identity=MEMBER_ID)
POINTS_FIELDS: dict[str, Spec] = {
    "id": TEXT,
    "externalId": TEXT,
    "programId": TEXT,
    "points": NON_NEGATIVE,
    "secondaryPoints": NON_NEGATIVE,
    "tierPoints": Num(minimum=0, integer=True),
    "eventDetails": EVENT_DETAILS,
    "tierId": TEXT,
}
EARN_BURN = Obj(fields=POINTS_FIELDS, identity=MEMBER_ID)
SET_POINTS = Obj(
    fields={
        **POINTS_FIELDS,
        "resetPoints": Bool(),
        "resetSecondaryPoints": Bool(),
        "resetTierPoints": Bool(),
    },
    identity=MEMBER_ID,
)
CHANGE_TIER = Obj(
    fields={k: TEXT for k in ("memberId", "externalMemberId", "programId", "tierId")}
    | {"eventDetails": EVENT_DETAILS},
    required=("tierId",),
    identity=MEMBER_REF,
)
CHECK_IN_OUT = Obj(
    fields={k: TEXT for k in ("memberId", "externalMemberId", "programId")} | EVENT_FIELDS,
    identity=MEMBER_REF,
)

COUPON_FIELDS: dict[str, Spec] = {
    "id": TEXT,
    "externalId": TEXT,
    "campaignId": TEXT,
    "offerId": TEXT,
    "person": PERSON,
    "metaData": META,
    "sku": TEXT,
    "optOut": Bool(),
    "expiryDate": Timestamp(),
}
REDEMPTION = Obj(
    fields={
        "redemptionCode": TEXT,
        "lat": NUMBER,
        "lon": NUMBER,
        "alt": NUMBER,
        "redemptionSource": TEXT,
        "redemptionReference": TEXT,
        "transactionReference": TEXT,
        "transactionAmount": NUMBER,
        "metaData": META,
    }
)
NEW_COUPON = Obj(fields=COUPON_FIELDS, required=("campaignId", "offerId", "externalId"))
COUPON_REDEEM = Obj(
    fields={k: TEXT for k in ("id", "externalId", "campaignId")}
    | {"redemptionDetails": REDEMPTION},
    identity=COUPON_ID,
)
COUPON_KEY = Obj(fields={k: TEXT for k in ("id", "externalId", "campaignId")}, identity=COUPON_ID)
COUPON_BY_EXTERNAL_ID = Obj(
    fields={k: TEXT for k in ("externalId", "couponCampaignId")},
    required=("externalId", "couponCampaignId"),
)

TICKET_EVENT = Obj(
    fields={
        "productionId": TEXT,
        "venueId": TEXT,
        "scheduledStartDate": Timestamp(),
        "doorsOpen": Timestamp(),
        "endDate": Timestamp(),
        "relevantDate": Timestamp(),
    },
    required=("productionId", "venueId", "scheduledStartDate"),
)
TICKET_BY_NUMBER = Obj(
    fields={k: TEXT for k in ("ticketNumber", "productionId")},
    required=("ticketNumber", "productionId"),
)
NEW_TICKET = Obj(
    fields={
        "ticketTypeId": TEXT,
        "eventId": TEXT,
        "event": TICKET_EVENT,
        "ticketNumber": TEXT,
        "orderNumber": TEXT,
        "barcodeContents": TEXT,
        "seatInfo": Obj(fields={k: TEXT for k in ("section", "row", "seat", "gate", "entrance")}),
        "faceValue": Obj(fields={"amount": NON_NEGATIVE, "currency": TEXT}, required=("amount",)),
        "person": PERSON,
        "metaData": META,
        "optOut": Bool(),
        "expiryDate": Timestamp(),
    },
    required=("ticketTypeId", "ticketNumber"),
    identity=(("eventId",), ("event",)),
)
TICKET_REF = Obj(
    fields={
        "ticketId": TEXT,
        "ticketNumber": Obj(
            fields={"productionId": TEXT, "ticketNumber": TEXT},
            required=("productionId", "ticketNumber"),
        ),
    },
    identity=(("ticketId",), ("ticketNumber",)),
)
TICKET_REDEEM = Obj(
    fields={
        "ticket": TICKET_REF,
        "redemptionDetails": Obj(
            fields={k: TEXT for k in ("redemptionSource", "redemptionReference")}
            | {"lat": NUMBER, "lon": NUMBER, "alt": NUMBER, "metaData": META}
        ),
    },
    required=("ticket",),
)
PROTOCOLS = ("MEMBERSHIP", "SINGLE_USE_COUPON", "EVENT_TICKETING")
EMAIL_PASS = Obj(
    fields={k: TEXT for k in ("id", "externalId", "classId", "alternativeEmail")}
    | {"protocol": Enum(names=PROTOCOLS)},
    required=("protocol",),
    identity=(("id",), ("externalId", "classId")),
)


@dataclass(frozen=True)
class Operation:
    """One PassKit call. `paths` are tried in order; the first whose {names} are all in the
    body wins, and those names are moved from the body into the path."""

    name: str
    method: str
    paths: tuple[str, ...]
    model: Obj
    kind: str | None = None  # "member" | "coupon" | "ticket": the answer gets a pass_url
    creates: bool = False  # issues a billable pass
    on_conflict: str | None = None  # operation to fall back to when PassKit says "exists"
    id_in_answer: tuple[str, ...] = ("id",)  # where the pass id sits in PassKit's answer
    id_in_request: tuple[str, ...] = ("id",)
    external_id_in_request: tuple[str, ...] = ("externalId",)
    pass_gone: bool = False  # deletes/voids: no pass page to link to afterwards
    # How to look up what this create made, by its external id: the lookup operation, and which
    # of the create's fields (dotted paths) it takes under which names.
    find_with: str | None = None
    find_keys: tuple[tuple[str, str], ...] = ()
    query: bool = False  # a GET whose fields left after the path go in the query string


@dataclass(frozen=True)
class PassKitRequest:
    operation: Operation
    method: str
    path: str
    json: dict[str, Any] | None

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "json": self.json}


def _member(name: str, method: str, path: str, model: Obj, **extra: Any) -> Operation:
    return Operation(name, method, (path,), model, kind="member", **extra)


_MEMBER_EVENT = {"id_in_answer": ("member", "id"), "id_in_request": ("memberId",)}
_MEMBER_EVENT_EXT = {"external_id_in_request": ("externalMemberId",)}
CATALOG: dict[str, Operation] = {
    op.name: op
    for op in (
        _member(
            "members.enrol",
            "POST",
            "/members/member",
            NEW_MEMBER,
            creates=True,
            find_with="members.lookup",
            find_keys=(("externalId", "externalId"), ("programId", "programId")),
        ),
        _member(
            "members.upsert", "POST", "/members/member", NEW_MEMBER, on_conflict="members.update"
        ),
        _member("members.update", "PUT", "/members/member", MEMBER_CHANGE),
        _member("members.delete", "DELETE", "/members/member", MEMBER_KEY, pass_gone=True),
        Operation(
            "members.lookup",
            "GET",
            ("/members/member/id/{id}", "/members/member/externalId/{programId}/{externalId}"),
            MEMBER_KEY,
            kind="member",
        ),
        _member("members.points.earn", "PUT", "/members/member/points/earn", EARN_BURN),
        _member("members.points.burn", "PUT", "/members/member/points/burn", EARN_BURN),
        _member("members.points.set", "PUT", "/members/member/points/set", SET_POINTS),
        _member(
            "members.tier.change",
            "PUT",
            "/members/member/tier",
            CHANGE_TIER,
            **_MEMBER_EVENT,
            **_MEMBER_EVENT_EXT,
        ),
        _member(
            "members.check_in",
            "POST",
            "/members/member/checkIn",
            CHECK_IN_OUT,
            **_MEMBER_EVENT,
            **_MEMBER_EVENT_EXT,
        ),
        _member(
            "members.check_out",
            "POST",
            "/members/member/checkOut",
            CHECK_IN_OUT,
            **_MEMBER_EVENT,
            **_MEMBER_EVENT_EXT,
        ),
        Operation(
            "coupons.issue",
            "POST",
            ("/coupon/singleUse/coupon",),
            NEW_COUPON,
            kind="coupon",
            creates=True,
            find_with="coupons.lookup",
            find_keys=(("externalId", "externalId"), ("campaignId", "couponCampaignId")),
        ),
        Operation(
            "coupons.lookup",
            "GET",
            ("/coupon/singleUse/coupon/externalId/{couponCampaignId}/{externalId}",),
            COUPON_BY_EXTERNAL_ID,
            kind="coupon",
        ),
        Operation(
            "coupons.redeem", "PUT", ("/coupon/singleUse/coupon/redeem",), COUPON_REDEEM, "coupon"
        ),
        Operation(
            "coupons.void",
            "DELETE",
            ("/coupon/singleUse/coupon",),
            COUPON_KEY,
            kind="coupon",
            pass_gone=True,
        ),
        Operation(
            "tickets.issue",
            "POST",
            ("/eventTickets/ticket",),
            NEW_TICKET,
            kind="ticket",
            creates=True,
            external_id_in_request=("ticketNumber",),
            find_with="tickets.lookup",
            find_keys=(("ticketNumber", "ticketNumber"), ("event.productionId", "productionId")),
        ),
        Operation(
            "tickets.lookup",
            "GET",
            ("/eventTickets/ticket/ticketNumber",),
            TICKET_BY_NUMBER,
            kind="ticket",
            external_id_in_request=("ticketNumber",),
            query=True,
        ),
        Operation(
            "tickets.redeem",
            "PUT",
            ("/eventTickets/ticket/redeem",),
            TICKET_REDEEM,
            kind="ticket",
            id_in_request=("ticket", "ticketId"),
            external_id_in_request=("ticket", "ticketNumber", "ticketNumber"),
        ),
        Operation(
            "distribution.email",
            "POST",
            ("/distribution/email",),
            EMAIL_PASS,
            external_id_in_request=("externalId",),
        ),
    )
}


def dig(data: Any, keys: tuple[str, ...]) -> Any:
    """data[k1][k2]… or None when any step is missing."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _route(operation: Operation, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for template in operation.paths:
        names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
        if all(isinstance(body.get(name), str) for name in names):
            path = template
            for name in names:
                path = path.replace("{" + name + "}", quote(body[name], safe=""))
            return path, {k: v for k, v in body.items() if k not in names}
    return operation.paths[0], body


_GOT = re.compile(r"\(got (.+)\)$")  # the value a schema problem quotes


def build_request(operation: Operation, body: Any) -> PassKitRequest:
    """Validate a rendered body against the operation's model and turn it into a request.

    Raises InvalidRequest naming every problem, before anything is sent or billed.
    """
    problems = validate(operation.model, body)
    if problems:
        text = "; ".join(f"{path} {message}" for path, message in problems[:4])
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise InvalidRequest(
            f"{text}{more}. The {operation.name} request was not sent.",
            field=problems[0][0] or None,
            hint="Check the values mapped in the zap; a dry run shows the request.",
            private=[got[1] for _, message in problems if (got := _GOT.search(message))],
        )
    path, rest = _route(operation, body)
    if operation.query:
        # grpc-gateway reads a GET's fields from the path, then from the query string.
        query = urlencode({k: v for k, v in rest.items() if isinstance(v, str)})
        return PassKitRequest(operation, "GET", f"{path}?{query}" if query else path, None)
    json_body = None if operation.method == "GET" else rest
    return PassKitRequest(operation, operation.method, path, json_body)

"""The PassKit operations the relay can perform, each with the PassKit RPCs that carry it.

Methods, paths and request messages come from PassKit's published contract
(`relay.passkit.contract`, generated from PassKit's SDK), never from memory. A template renders
only the JSON body; the operation decides how it travels: which RPC (the first whose path fields
the body holds), which method and path (path fields are taken out of the body), and whether a body
is sent or its fields go in the query string. Besides PassKit's own rules, an operation may add the
relay's: fields it needs (an external id, for create protection) and how a record is identified.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode

from relay.errors import InvalidRequest
from relay.passkit.contract import Rpc, input_spec, rpc
from relay.passkit.schema import Condition, Obj, Problems, validate

MEMBER_ID = (("id",), ("externalId", "programId"))
MEMBER_REF = (("memberId",), ("externalMemberId", "programId"))
COUPON_ID = (("id",), ("externalId", "campaignId"))


@dataclass(frozen=True)
class Operation:
    """One relay operation over one or more PassKit RPCs (`rpcs`, tried in order: the first
    whose path fields are all in the body carries it)."""

    name: str
    rpcs: tuple[str, ...]
    kind: str | None = None  # "member" | "coupon" | "ticket": the answer gets a pass_url
    creates: bool = False  # issues a billable pass
    on_conflict: str | None = None  # operation to fall back to when the record exists
    id_in_answer: tuple[str, ...] = ("id",)  # where the pass id sits in PassKit's answer
    id_in_request: tuple[str, ...] = ("id",)
    external_id_in_request: tuple[str, ...] = ("externalId",)
    pass_gone: bool = False  # deletes/voids: no pass page to link to afterwards
    # How to look up what this create made, by its external id: the lookup operation, and which
    # of the create's fields (dotted paths) it takes under which names.
    find_with: str | None = None
    find_keys: tuple[tuple[str, str], ...] = ()
    # The relay's own additions to PassKit's rules.
    required: tuple[str, ...] = ()
    identity: Sequence[Sequence[str]] = ()

    @property
    def method(self) -> str:
        return rpc(self.rpcs[0]).method

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(rpc(name).path for name in self.rpcs)

    @cached_property
    def models(self) -> dict[str, Obj]:
        """Each RPC's input message with the relay's additions."""
        extra = tuple(Condition(name, "required") for name in self.required)
        return {
            name: dataclasses.replace(
                spec, conditions=spec.conditions + extra, identity=self.identity
            )
            for name in self.rpcs
            if (spec := input_spec(name))
        }


@dataclass(frozen=True)
class PassKitRequest:
    operation: Operation
    method: str
    path: str
    json: dict[str, Any] | None

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "json": self.json}


M, C, T = "members.Members.", "single_use_coupons.SingleUseCoupons.", "event_tickets.EventTickets."


def _member(name: str, *rpcs: str, **extra: Any) -> Operation:
    return Operation(name, tuple(M + r for r in rpcs), kind="member", **extra)


_MEMBER_EVENT: dict[str, Any] = {
    "id_in_answer": ("member", "id"),
    "id_in_request": ("memberId",),
    "external_id_in_request": ("externalMemberId",),
    "identity": MEMBER_REF,
}
_NEW_MEMBER = {"required": ("programId", "tierId", "externalId")}
CATALOG: dict[str, Operation] = {
    op.name: op
    for op in (
        _member(
            "members.enrol",
            "enrolMember",
            creates=True,
            find_with="members.lookup",
            find_keys=(("externalId", "externalId"), ("programId", "programId")),
            **_NEW_MEMBER,
        ),
        _member("members.upsert", "enrolMember", on_conflict="members.update", **_NEW_MEMBER),
        _member("members.update", "updateMember", identity=MEMBER_ID),
        _member("members.delete", "deleteMember", identity=MEMBER_ID, pass_gone=True),
        _member(
            "members.lookup",
            "getMemberRecordById",
            "getMemberRecordByExternalId",
            identity=MEMBER_ID,
        ),
        _member("members.points.earn", "earnPoints", identity=MEMBER_ID),
        _member("members.points.burn", "burnPoints", identity=MEMBER_ID),
        _member("members.points.set", "setPoints", identity=MEMBER_ID),
        _member("members.tier.change", "changeMemberTier", **_MEMBER_EVENT),
        _member("members.check_in", "checkInMember", **_MEMBER_EVENT),
        _member("members.check_out", "checkOutMember", **_MEMBER_EVENT),
        _member("members.expiry.update", "updateMemberExpiry", identity=MEMBER_ID),
        Operation(
            "coupons.issue",
            (C + "createCoupon",),
            kind="coupon",
            creates=True,
            find_with="coupons.lookup",
            find_keys=(("externalId", "externalId"), ("campaignId", "couponCampaignId")),
            required=("campaignId", "offerId", "externalId"),
        ),
        Operation(
            "coupons.lookup",
            (C + "getCouponById", C + "getCouponByExternalId"),
            kind="coupon",
            identity=(("id",), ("externalId", "couponCampaignId")),
        ),
        Operation("coupons.redeem", (C + "redeemCoupon",), kind="coupon", identity=COUPON_ID),
        Operation(
            "coupons.void", (C + "voidCoupon",), kind="coupon", identity=COUPON_ID, pass_gone=True
        ),
        Operation(
            "tickets.issue",
            (T + "issueTicket",),
            kind="ticket",
            creates=True,
            external_id_in_request=("ticketNumber",),
            find_with="tickets.lookup",
            find_keys=(("ticketNumber", "ticketNumber"), ("event.productionId", "productionId")),
            required=("ticketNumber",),
        ),
        Operation(
            "tickets.lookup",
            (T + "getTicketById", T + "getTicketByTicketNumber"),
            kind="ticket",
            identity=(("id",), ("ticketNumber", "productionId")),
            external_id_in_request=("ticketNumber",),
        ),
        Operation(
            "tickets.redeem",
            (T + "redeemTicket",),
            kind="ticket",
            id_in_request=("ticket", "ticketId"),
            external_id_in_request=("ticket", "ticketNumber", "ticketNumber"),
        ),
        Operation(
            "distribution.email",
            ("io.Distribution.sendWelcomeEmail",),
            external_id_in_request=("externalId",),
            identity=(("id",), ("externalId", "classId")),
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


def _route(operation: Operation, body: dict[str, Any]) -> Rpc:
    """The first RPC whose path fields the body holds (as text)."""
    for name in operation.rpcs:
        call = rpc(name)
        if all(isinstance(body.get(field), str) for field in call.path_fields):
            return call
    return rpc(operation.rpcs[0])


_GOT = re.compile(r"\(got (.+)\)$")  # the value a schema problem quotes


def problems_in(operation: Operation, body: Any) -> Problems:
    """Everything PassKit's contract (and the relay) finds wrong with a rendered body."""
    call = _route(operation, body) if isinstance(body, dict) else rpc(operation.rpcs[0])
    return validate(operation.models[call.name], body)


def _sent_as(path: str, body: Any, fields: Mapping[str, Any]) -> str | None:
    """The sender's field whose value PassKit's `path` holds, when one plainly does."""
    value = dig(body, tuple(path.split(".")))
    if value is None or isinstance(value, (dict, list)):
        return None
    wanted = str(value).strip().casefold()
    for name, given in fields.items():
        texts = given if isinstance(given, list) else [given]
        if any(str(text).strip().casefold() == wanted for text in texts):
            return str(name)
    return None


def build_request(
    operation: Operation, body: Any, fields: Mapping[str, Any] | None = None
) -> PassKitRequest:
    """Validate a rendered body against the RPC's input message (PassKit's contract plus the
    relay's additions) and turn it into a request.

    Raises InvalidRequest naming every problem, before anything is sent or billed: by the
    sender's field where its value is plainly the one at fault (`email`, PassKit's
    person.emailAddress), else by PassKit's path.
    """
    problems = problems_in(operation, body)
    if problems:
        named = []
        for path, message in problems[:4]:
            field = _sent_as(path, body, fields or {}) if path else None
            named.append((field, f"{field} {message} (PassKit's {path})" if field else
                          f"{path} {message}"))  # fmt: skip
        text = "; ".join(words for _, words in named)
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise InvalidRequest(
            f"{text}{more}. The {operation.name} request was not sent.",
            field=named[0][0] or problems[0][0] or None,
            hint="Check the values mapped in the zap; a dry run shows the request.",
            private=[got[1] for _, message in problems if (got := _GOT.search(message))],
        )
    call = _route(operation, body)
    path = call.path
    for name in call.path_fields:
        path = path.replace("{" + name + "}", quote(body[name], safe=""))
    rest = {k: v for k, v in body.items() if k not in call.path_fields}
    if call.body == "*":
        return PassKitRequest(operation, call.method, path, rest)
    # No body: grpc-gateway reads the fields left after the path from the query string.
    query = urlencode({k: v for k, v in rest.items() if isinstance(v, str)})
    return PassKitRequest(operation, call.method, f"{path}?{query}" if query else path, None)

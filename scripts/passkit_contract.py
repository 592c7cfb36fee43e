"""Write relay/passkit/passkit_contract.json: PassKit's REST contract, from PassKit's own published SDK.

    scripts/passkit-contract            regenerate the file
    scripts/passkit-contract --check    exit 1 (with a diff summary) when the file has drifted

PassKit's REST API is grpc-gateway over its gRPC services, so the routes (`google.api.http`) and
message types compiled into `passkit-python-grpc-sdk` (a dev/test dependency: the relay itself
never imports grpc or protobuf) are the authority on what a request may hold. For the RPCs the
relay calls, and the list endpoints it reads, the file keeps: method, path, body rule, input and
output message, whether the answer is a stream; every reachable message's fields by JSON name
with their type, oneof groups, and enums with their numbers.

The SDK carries no validation rules; PassKit's Go SDK does, as struct tags generated into its
`*.pb.go` files (`validateGeneric:"required_without_all=SecondaryPoints TierPoints,gte=0"`, and
`validateCreate`/`validateUpdate` variants). `RULES` below transcribes the tags of every message
the relay can send, naming the Go file each came from (PassKit/passkit-golang-grpc-sdk v1.1.123);
only tags that constrain something are kept (not `omitempty` or `-` alone).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "relay" / "passkit" / "passkit_contract.json"

# The RPCs behind the relay's catalog operations, and the list endpoints it reads.
RPCS = {
    "members.Members.enrolMember": "create",
    "members.Members.updateMember": "update",
    "members.Members.deleteMember": "update",
    "members.Members.getMemberRecordById": "generic",
    "members.Members.getMemberRecordByExternalId": "generic",
    "members.Members.earnPoints": "generic",
    "members.Members.burnPoints": "generic",
    "members.Members.setPoints": "generic",
    "members.Members.changeMemberTier": "generic",
    "members.Members.checkInMember": "generic",
    "members.Members.checkOutMember": "generic",
    "members.Members.updateMemberExpiry": "update",
    "single_use_coupons.SingleUseCoupons.createCoupon": "create",
    "single_use_coupons.SingleUseCoupons.getCouponByExternalId": "generic",
    "single_use_coupons.SingleUseCoupons.getCouponById": "generic",
    "single_use_coupons.SingleUseCoupons.redeemCoupon": "update",
    "single_use_coupons.SingleUseCoupons.voidCoupon": "update",
    "event_tickets.EventTickets.issueTicket": "create",
    "event_tickets.EventTickets.getTicketByTicketNumber": "generic",
    "event_tickets.EventTickets.getTicketById": "generic",
    "event_tickets.EventTickets.redeemTicket": "generic",
    "io.Distribution.sendWelcomeEmail": "generic",
    "members.Members.listPrograms": "generic",
    "members.Members.listTiers": "generic",
    "single_use_coupons.SingleUseCoupons.listCouponCampaigns": "generic",
    "single_use_coupons.SingleUseCoupons.listCouponOffers": "generic",
    "event_tickets.EventTickets.listProductions": "generic",
    "event_tickets.EventTickets.listVenues": "generic",
    "event_tickets.EventTickets.listTicketTypes": "generic",
    # What the sandbox serves besides: setting up programs, campaigns and events. Types only
    # ("types"): their Go tags are not transcribed.
    "members.Members.createProgram": "types",
    "members.Members.createTier": "types",
    "single_use_coupons.SingleUseCoupons.createCouponCampaign": "types",
    "single_use_coupons.SingleUseCoupons.createCouponOffer": "types",
    "event_tickets.EventTickets.createProduction": "types",
    "event_tickets.EventTickets.createVenue": "types",
    "event_tickets.EventTickets.createTicketType": "types",
}
# Which of the Go tag sets an RPC is checked with is not published: creates use validateCreate,
# changes validateUpdate (whose `id` is "-", so a change by external id passes, as PassKit's docs
# say it does), everything else validateGeneric.

# Well-known types as the JSON mapping writes them.
WELL_KNOWN = {
    "google.protobuf.Timestamp": "Timestamp",
    "google.protobuf.Duration": "Duration",
    "google.protobuf.Struct": "Struct",
    "google.protobuf.Value": "Value",
    "google.protobuf.ListValue": "ListValue",
    "google.protobuf.Empty": "Empty",
    "google.protobuf.StringValue": "string",
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.Int32Value": "int32",
    "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.FloatValue": "float",
    "google.protobuf.DoubleValue": "double",
}

# Transcribed from the Go SDK's struct tags: message → JSON field (or `oneof:<name>`) → tag set
# ("generic", "create", "update") → the tag. A field with one tag set has it whatever the RPC.
# Field names in tags are the Go names turned into JSON names.
RULES: dict[str, dict[str, dict[str, str]]] = {}
RULES.update(
    {
        # io/event_tickets/event.pb.go
        "event_tickets.EventLimitedFieldsRequest": {
            "productionId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "venueId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "scheduledStartDate": {
                "generic": "omitempty",
                "create": "required",
                "update": "isdefault",
            },
            "metrics": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
            "created": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
            "updated": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.IssueTicketRequest": {
            "oneof:eventInfo": {
                "generic": "omitempty",
                "create": "required",
                "update": "omitempty",
            },
            "ticketTypeId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "ticketNumber": {
                "generic": "omitempty",
                "create": "omitempty",
                "update": "required_without=Id",
            },
            "status": {"generic": "omitempty", "create": "isdefault", "update": "omitempty"},
            "redemptionDetails": {
                "generic": "isdefault",
                "create": "isdefault",
                "update": "isdefault",
            },
            "validateDetails": {
                "generic": "isdefault",
                "create": "isdefault",
                "update": "isdefault",
            },
            "created": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
            "updated": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.RedeemTicketRequest": {
            "ticket": {"generic": "required"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.Seat": {
            "sectionColor": {"generic": "omitempty,rgb"},
            "portalURL": {"generic": "omitempty,http_url"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.TicketId": {
            "oneof:id": {"generic": "required"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.TicketNumber": {
            "productionId": {"generic": "required"},
            "ticketNumber": {"generic": "required"},
        },
        # io/event_tickets/ticket.pb.go
        "event_tickets.TicketNumberRequest": {
            "productionId": {"generic": "required_without=productionUid"},
            "productionUid": {"generic": "required_without=productionId"},
            "ticketNumber": {"generic": "required"},
        },
        # io/proximity.pb.go
        "io.Beacon": {
            "id": {
                "create": "omitempty,uuidCompressedString",
                "update": "required,uuidCompressedString",
            },
            "uuid": {
                "generic": "required_without=id,uuid_rfc4122",
                "create": "required_without=id,uuid_rfc4122",
                "update": "required_without=id,uuid_rfc4122",
            },
            "name": {"generic": "max=45", "create": "max=45", "update": "max=45"},
            "major": {
                "generic": "required_without=id,min=0,max=65535",
                "create": "required_without=id,min=0,max=65535",
                "update": "required_without=id,min=0,max=65535",
            },
            "minor": {
                "generic": "required_without=id,min=0,max=65535",
                "create": "required_without=id,min=0,max=65535",
                "update": "required_without=id,min=0,max=65535",
            },
            "lockScreenMessage": {
                "generic": "required_without=id,max=255",
                "create": "required_without=id,max=255",
                "update": "required_without=id,max=255",
            },
        },
        # io/common_objects.pb.go
        "io.Date": {
            "year": {"generic": "max=9999"},
            "month": {"generic": "min=1,max=12"},
            "day": {"generic": "min=1,max=31"},
        },
        # io/distribution.pb.go
        "io.EmailDistributionRequest": {
            "id": {"create": "required_without=externalId"},
            "protocol": {"create": "required"},
        },
        # io/proximity.pb.go
        "io.GPSLocation": {
            "id": {
                "create": "omitempty,uuidCompressedString",
                "update": "required,uuidCompressedString",
            },
            "name": {"generic": "max=45", "create": "max=45", "update": "max=45"},
            "lat": {
                "generic": "required_without=id,latitude",
                "create": "required_without=id,latitude",
                "update": "required_without=id,latitude",
            },
            "lon": {
                "generic": "required_with=lat,required_without=id,longitude",
                "create": "required_with=lat,required_without=id,longitude",
                "update": "required_with=lat,required_without=id,longitude",
            },
            "alt": {
                "generic": "omitempty,max=8848",
                "create": "omitempty,max=8848",
                "update": "omitempty,max=8848",
            },
            "lockScreenMessage": {
                "generic": "required_without=id,max=255",
                "create": "required_without=id,max=255",
                "update": "required_without=id,max=255",
            },
        },
        # io/common_objects.pb.go
        "io.Id": {
            "id": {"generic": "required"},
        },
        # io/links.pb.go
        "io.Link": {
            "id": {
                "create": "omitempty,uuidCompressedString",
                "update": "required,uuidCompressedString",
            },
            "url": {
                "generic": "required_without=id,uri",
                "create": "required_without=id,uri",
                "update": "required_without=id,uri",
            },
            "title": {
                "generic": "required_without=id",
                "create": "required_without=id",
                "update": "required_without=id",
            },
            "type": {"generic": "max=5,min=1", "create": "max=5,min=1", "update": "max=5,min=1"},
            "usage": {
                "generic": "required,min=1",
                "create": "required,min=1",
                "update": "required,min=1",
            },
        },
        # io/localization.pb.go
        "io.LocalizedString": {
            "translations": {"generic": "languageCode"},
        },
        # io/personal.pb.go
        "io.Person": {
            "emailAddress": {
                "generic": "omitempty,email",
                "create": "omitempty,email",
                "update": "omitempty,email",
            },
        },
        # io/members/member.pb.go
        "members.ChangeTierRequest": {
            "memberId": {"update": "required_without=externalMemberId"},
            "programId": {"update": "required_with=externalMemberId"},
            "tierId": {"update": "required"},
        },
        # io/members/member.pb.go
        "members.EarnBurnPointsRequest": {
            "id": {"generic": "required_without=externalId"},
            "externalId": {"generic": "required_without=id"},
            "programId": {"generic": "required_without=id"},
            "points": {"generic": "required_without_all=secondaryPoints tierPoints,gte=0"},
            "secondaryPoints": {"generic": "required_without_all=points tierPoints,gte=0"},
            "tierPoints": {"generic": "required_without_all=points secondaryPoints"},
        },
        # io/members/event.pb.go
        "members.EventDetails": {
            "address": {"create": "omitempty,max=255"},
            "externalEventId": {"create": "omitempty,max=255"},
            "externalDeviceId": {"create": "omitempty,max=255"},
            "externalServiceId": {"create": "omitempty,max=255"},
            "externalUserId": {"create": "omitempty,max=255"},
        },
        # io/members/member.pb.go
        "members.Member": {
            "id": {"generic": "required", "create": "-", "update": "-"},
            "tierId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "programId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "created": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
            "updated": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
        },
        # io/members/member.pb.go
        "members.MemberExpiry": {
            "id": {"update": "required_without=externalId"},
            "externalId": {"update": "required_without=id"},
            "programId": {"update": "required_without=id"},
            "expiryDate": {"update": "required"},
        },
        # io/members/member.pb.go
        "members.MemberCheckInOutRequest": {
            "memberId": {"create": "required_without=externalMemberId"},
            "externalMemberId": {"create": "required_without=memberId"},
            "programId": {"create": "required_without=memberId"},
            "address": {"create": "omitempty,max=255"},
            "externalEventId": {"create": "omitempty,max=255"},
            "externalDeviceId": {"create": "omitempty,max=255"},
            "externalServiceId": {"create": "omitempty,max=255"},
            "externalUserId": {"create": "omitempty,max=255"},
        },
        # io/members/member.pb.go
        "members.MemberRecordByExternalIdRequest": {
            "programId": {"generic": "required"},
            "externalId": {"generic": "required"},
        },
        # io/members/member.pb.go
        "members.SetPointsRequest": {
            "id": {"generic": "required_without=externalId"},
            "externalId": {"generic": "required_without=id"},
            "programId": {"generic": "required_without=id"},
            "points": {
                "generic": "required_without_all=secondaryPoints tierPoints resetPoints "
                "resetSecondaryPoints resetTierPoints"
            },
        },
        # io/single_use_coupons/coupon.pb.go
        "single_use_coupons.Coupon": {
            "id": {"generic": "required", "create": "-", "update": "required_without=externalId"},
            "externalId": {
                "generic": "omitempty",
                "create": "omitempty",
                "update": "required_without=id",
            },
            "offerId": {"generic": "omitempty", "create": "required", "update": "omitempty"},
            "campaignId": {
                "generic": "omitempty",
                "create": "required",
                "update": "required_without=id",
            },
            "created": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
            "updated": {"generic": "isdefault", "create": "isdefault", "update": "isdefault"},
        },
        # io/single_use_coupons/coupon.pb.go
        "single_use_coupons.ExternalIdRequest": {
            "couponCampaignId": {"generic": "required"},
            "externalId": {"generic": "required"},
        },
    }
)


def _load_descriptors() -> Any:
    import passkit  # the SDK registers each file in the default pool as it is imported

    for module in pkgutil.walk_packages(passkit.__path__, "passkit."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    from google.protobuf import descriptor_pool

    return descriptor_pool.Default()


def _http_rule(method: Any) -> tuple[str, str, str]:
    from google.api import annotations_pb2

    rule = method.GetOptions().Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    path = rule.custom.path if kind == "custom" else getattr(rule, kind)
    verb = rule.custom.kind if kind == "custom" else kind.upper()
    return verb, path, rule.body


_SCALARS = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
    17: "sint32", 18: "sint64",
}  # fmt: skip


def _field(field: Any, todo: list[Any]) -> dict[str, Any]:
    entry: dict[str, Any]
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        inner = _field(value, todo)
        return {"map": inner.get("type") or inner}
    if field.enum_type is not None:
        entry = {"enum": field.enum_type.full_name}
        todo.append(field.enum_type)
    elif field.message_type is not None:
        name = field.message_type.full_name
        if name in WELL_KNOWN:
            entry = {"type": WELL_KNOWN[name]}
        else:
            entry = {"message": name}
            todo.append(field.message_type)
    else:
        entry = {"type": _SCALARS[field.type]}
    if field.is_repeated:
        entry["repeated"] = True
    return entry


def build() -> dict[str, Any]:
    from importlib.metadata import version

    pool = _load_descriptors()
    rpcs: dict[str, Any] = {}
    todo: list[Any] = []
    for full_name, rules in RPCS.items():
        service_name, method_name = full_name.rsplit(".", 1)
        method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        verb, path, body = _http_rule(method)
        rpcs[full_name] = {
            "method": verb,
            "path": path,
            "body": body,
            "input": method.input_type.full_name,
            "output": method.output_type.full_name,
            "stream": method.server_streaming,
            "rules": rules,
        }
        todo += [method.input_type, method.output_type]
    messages: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    while todo:
        item = todo.pop()
        name = item.full_name
        if name in messages or name in enums or name in WELL_KNOWN:
            continue
        if hasattr(item, "values_by_name"):  # an enum
            enums[name] = {value.name: value.number for value in item.values}
            continue
        fields = {f.json_name: _field(f, todo) for f in item.fields}
        oneofs = {
            o.name: [f.json_name for f in o.fields]
            for o in item.oneofs
            if not (len(o.fields) == 1 and o.name == "_" + o.fields[0].name)  # proto3 optional
        }
        entry: dict[str, Any] = {"fields": fields}
        if oneofs:
            entry["oneofs"] = oneofs
        if name in RULES:
            entry["rules"] = RULES[name]
        messages[name] = entry
    unknown = sorted(set(RULES) - set(messages))
    if unknown:
        raise SystemExit(f"RULES names messages the contract does not reach: {unknown}")
    return {
        "source": f"passkit-python-grpc-sdk {version('passkit-python-grpc-sdk')} (routes and "
        "messages); PassKit/passkit-golang-grpc-sdk v1.1.123 struct tags (rules), transcribed "
        "in scripts/passkit_contract.py",
        "rpcs": dict(sorted(rpcs.items())),
        "messages": dict(sorted(messages.items())),
        "enums": dict(sorted(enums.items())),
    }


def render(contract: dict[str, Any]) -> str:
    return json.dumps(contract, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the file has drifted")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.name} differs from what the SDK gives: run scripts/passkit-contract")
            return 1
        print(f"{OUTPUT.name} matches the SDK")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Membership operations with PassKit's semantics (passkit-api.md §3).

Each function takes the state and a decoded request message and returns the answer's JSON.
The rules a client can trip over:

- a member is found by `id`, or by `externalId` + `programId` (`memberId` / `externalMemberId`
  for tier changes and check-ins); `externalId` is unique in the program and never changes;
- `PUT /members/member` patches by default: missing *and falsy* values are ignored (so 0 points
  or an empty string change nothing); `operation: "OPERATION_PUT"` replaces the record;
- balances stay ≥ 0 unless the member's tier allows overdrawing (`pointsOverdrawn`,
  `secondaryPointsOverdrawn`); earn/burn amounts must be ≥ 0, and at least one above 0;
  `points/set` can only reach zero through `resetPoints` (0 means "unset" in proto3);
- tier changes and check-ins answer with a `MemberEvent`.
"""

from __future__ import annotations

from typing import Any

from relay.sandbox import proto
from relay.sandbox.errors import invalid, not_found, precondition
from relay.sandbox.faults import duplicate
from relay.sandbox.messages import EVENT_MEMBER, MEMBER_EVENT, MEMBER_OUT, MEMBER_POINTS
from relay.sandbox.state import Record, State, new_id, required

READ_ONLY = frozenset({"id", "created", "updated", "currentTierAwarded", "currentTierExpires"})
IMMUTABLE = ("externalId", "programId")
BALANCES = {"points": "pointsOverdrawn", "secondaryPoints": "secondaryPointsOverdrawn"}
_EVENT_KEYS = (
    *("address", "lat", "lon", "alt", "notes", "metaData"),
    *("externalUserId", "externalDeviceId", "externalServiceId"),
)


def find_member(
    state: State, message: Record, id_key: str = "id", external_key: str = "externalId"
) -> Record:
    if message.get(id_key):
        member = state.members.get(message[id_key])
        if member is None:
            raise not_found("member")
        return member
    if message.get(external_key):
        if not message.get("programId"):
            raise invalid(f"programId is required when {external_key} is set")
        member_id = state.member_ids.get((message["programId"], message[external_key]))
        if member_id is None:
            raise not_found("member")
        return state.members[member_id]
    raise invalid(f"{id_key} or {external_key} and programId are required")


def _check_balances(state: State, member: Record) -> None:
    tier = state.tier(member["programId"], member["tierId"])
    for balance, overdraw in BALANCES.items():
        if member.get(balance, 0) < 0 and not tier.get(overdraw):
            raise precondition(
                f"{balance} cannot go below zero: tier {tier['id']} does not allow overdrawing"
            )


def enrol(state: State, message: Record) -> Record:
    required(message, "programId", "tierId")
    state.program(message["programId"])
    state.tier(message["programId"], message["tierId"])
    key = (message["programId"], message.get("externalId", ""))
    if key[1] and key in state.member_ids:
        raise duplicate(state.faults.duplicates, "member", "externalId", key[1])
    member = state.created({k: v for k, v in message.items() if k not in READ_ONLY})
    member.pop("operation", None)
    member.setdefault("status", "ENROLLED")
    member["currentTierAwarded"] = member["created"]
    _check_balances(state, member)
    state.members[member["id"]] = member
    if key[1]:
        state.member_ids[key] = member["id"]
    return {"id": member["id"]}


def _patch(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """PassKit's OPERATION_PATCH: falsy values are ignored, nested objects merged."""
    merged = dict(current)
    for key, value in changes.items():
        if not value:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def update(state: State, message: Record) -> Record:
    member = find_member(state, message)
    for key in IMMUTABLE:
        if message.get(key) and message[key] != member.get(key):
            raise invalid(f"{key} cannot be changed")
    changes = {k: v for k, v in message.items() if k not in READ_ONLY and k not in IMMUTABLE}
    if changes.pop("operation", "OPERATION_PATCH") == "OPERATION_PUT":
        # The record becomes what was sent; identity, stamps and the (required) tier and status
        # are kept when the body leaves them out.
        kept = ("id", "externalId", "programId", "created", "tierId", "status")
        new = {k: member[k] for k in (*kept, "currentTierAwarded") if k in member} | changes
    else:
        new = _patch(member, changes)
    if new["tierId"] != member["tierId"]:
        state.tier(member["programId"], new["tierId"])
        new["currentTierAwarded"] = state.stamp()
    _check_balances(state, new)
    member.clear()
    member.update(new)
    state.touch(member)
    return {"id": member["id"]}


def update_expiry(state: State, message: Record) -> Record:
    """updateMemberExpiry (members.MemberExpiry): one member's expiry date, nothing else."""
    required(message, "expiryDate")
    member = find_member(state, message)
    member["expiryDate"] = message["expiryDate"]
    state.touch(member)
    return {"id": member["id"]}


def get_by_id(state: State, message: Record) -> Record:
    required(message, "id")
    return proto.render(MEMBER_OUT, find_member(state, message))


def get_by_external_id(state: State, message: Record) -> Record:
    required(message, "programId", "externalId")
    return proto.render(MEMBER_OUT, find_member(state, message))


def delete(state: State, message: Record) -> Record:
    member = find_member(state, message)
    del state.members[member["id"]]
    state.member_ids.pop((member["programId"], member.get("externalId", "")), None)
    return {}


def _event(state: State, member: Record, event_type: str, details: Record) -> Record:
    now = state.stamp()
    event = {k: details[k] for k in _EVENT_KEYS if k in details}
    event.update(
        id=new_id(),
        member={k: member.get(k) for k in EVENT_MEMBER.fields},
        eventType=event_type,
        externalId=details.get("externalEventId", ""),
        date=now,
        created=now,
    )
    state.member_events.append(event)
    return proto.render(MEMBER_EVENT, event)


def _member_points(member: Record) -> Record:
    return proto.render(MEMBER_POINTS, member)


def _points_change(state: State, message: Record, sign: int, event_type: str) -> Record:
    if not any(message.get(balance) for balance in ("points", "secondaryPoints", "tierPoints")):
        # EarnBurnPointsRequest: points must be above 0 unless secondary or tier points are set.
        raise invalid("points must be greater than 0 unless secondaryPoints or tierPoints are set")
    member = find_member(state, message)
    new = dict(member)
    for balance in ("points", "secondaryPoints", "tierPoints"):
        amount = message.get(balance, 0)
        if amount < 0:
            raise invalid(f"{balance} must be greater than or equal to 0")
        total = new.get(balance, 0) + sign * amount
        new[balance] = total if balance == "tierPoints" else proto.float32(total)
    if new["tierPoints"] < 0:
        raise precondition("tierPoints cannot go below zero")  # uint32: no overdraw setting
    return _apply_points(state, member, new, message, event_type)


def _apply_points(
    state: State, member: Record, new: Record, message: Record, event_type: str
) -> Record:
    if message.get("tierId") and message["tierId"] != member["tierId"]:
        state.tier(member["programId"], message["tierId"])
        new.update(tierId=message["tierId"], currentTierAwarded=state.stamp())
    _check_balances(state, new)
    member.update(new)
    state.touch(member)
    _event(state, member, event_type, message.get("eventDetails", {}))
    return _member_points(member)


def earn(state: State, message: Record) -> Record:
    return _points_change(state, message, 1, "EVENT_MEMBER_POINTS_EARNED")


def burn(state: State, message: Record) -> Record:
    return _points_change(state, message, -1, "EVENT_MEMBER_POINTS_BURNED")


def set_points(state: State, message: Record) -> Record:
    member = find_member(state, message)
    new = dict(member)
    for balance in ("points", "secondaryPoints", "tierPoints"):
        reset = "reset" + balance[0].upper() + balance[1:]
        if message.get(reset):
            new[balance] = 0
        elif message.get(balance):
            new[balance] = message[balance]
    return _apply_points(state, member, new, message, "EVENT_MEMBER_POINTS_SET")


def change_tier(state: State, message: Record) -> Record:
    member = find_member(state, message, "memberId", "externalMemberId")
    required(message, "tierId")
    state.tier(member["programId"], message["tierId"])
    if message["tierId"] != member["tierId"]:
        member.update(tierId=message["tierId"], currentTierAwarded=state.stamp())
        state.touch(member)
    return _event(state, member, "EVENT_MEMBER_TIER_CHANGED", message.get("eventDetails", {}))


def check_in(state: State, message: Record) -> Record:
    return _check(state, message, "CHECKED_IN")


def check_out(state: State, message: Record) -> Record:
    return _check(state, message, "CHECKED_OUT")


def _check(state: State, message: Record, status: str) -> Record:
    member = find_member(state, message, "memberId", "externalMemberId")
    member["status"] = status
    state.touch(member)
    return _event(state, member, f"EVENT_MEMBER_{status}", message)

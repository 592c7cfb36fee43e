"""`POST /distribution/email`: (re)send a pass by email — recorded, never sent.

The pass is named by `id`, or by `externalId` + `classId` (the program, campaign or production
id; for tickets the external id is the ticket number), with `protocol` saying which kind it is.
Tests read what would have gone out from `state.emails` (or `GET /_sandbox/state`).
"""

from __future__ import annotations

from relay.sandbox.errors import invalid, not_found, precondition
from relay.sandbox.state import Record, State, required

KINDS = {"MEMBERSHIP": "member", "SINGLE_USE_COUPON": "coupon", "EVENT_TICKETING": "ticket"}


def _find(state: State, message: Record) -> Record:
    protocol = message["protocol"]
    table, index = {
        "MEMBERSHIP": (state.members, state.member_ids),
        "SINGLE_USE_COUPON": (state.coupons, state.coupon_ids),
        "EVENT_TICKETING": (state.tickets, state.ticket_ids),
    }[protocol]
    if message.get("id"):
        pass_id = message["id"]
    elif message.get("externalId"):
        if not message.get("classId"):
            raise invalid("classId is required when externalId is set")
        pass_id = index.get((message["classId"], message["externalId"]), "")
    else:
        raise invalid("id or externalId and classId are required")
    if pass_id not in table:
        raise not_found(KINDS[protocol])
    return table[pass_id]


def send_email(state: State, message: Record) -> Record:
    required(message, "protocol")
    record = _find(state, message)
    to = message.get("alternativeEmail") or record.get("person", {}).get("emailAddress")
    if not to:
        raise precondition("the pass holder has no email address and no alternativeEmail given")
    state.emails.append(
        {
            "passId": record["id"],
            "protocol": message["protocol"],
            "to": to,
            "passUrl": f"{state.pass_url}/{record['id']}",
            "sent": state.stamp(),
        }
    )
    return {}

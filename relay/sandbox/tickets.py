"""Event ticket operations (passkit-api.md §5): issue, redeem once, look up.

A ticket names its ticket type and either an existing `eventId` or an `event` (production,
venue, start): the event is found by those three or created, as PassKit does. Rules enforced:
the ticket type belongs to the event's production; `ticketNumber` is unique in the production;
"tickets can only be issued for events that are within 90 days of the ticket issue date"
(read as: the start is at most 90 days away, before or after now); a ticket redeems once, and
is named by `ticketId` or `ticketNumber`, never both (TicketId is a oneof).
"""

from __future__ import annotations

from datetime import timedelta

from relay.sandbox import proto
from relay.sandbox.errors import invalid, not_found, precondition
from relay.sandbox.faults import duplicate
from relay.sandbox.messages import PRODUCTION, TICKET, VENUE
from relay.sandbox.state import Record, State, required

ISSUE_WINDOW = timedelta(days=90)


def _check_window(state: State, start: str) -> None:
    if abs(proto.parse_timestamp(start) - state.now()) > ISSUE_WINDOW:
        raise invalid(
            "tickets can only be issued for events within 90 days of the issue date "
            f"(scheduledStartDate {start})"
        )


def _find_or_create_event(state: State, message: Record, ticket_type: Record) -> Record:
    if message.get("eventId"):
        event = state.events.get(message["eventId"])
        if event is None:
            raise not_found("event")
        _check_production(event, ticket_type)
        _check_window(state, event["scheduledStartDate"])
    else:
        ref = message["event"]
        for name in ("productionId", "venueId", "scheduledStartDate"):
            if not ref.get(name):
                raise invalid(f"event.{name} is required")
        if ref["productionId"] not in state.productions:
            raise not_found("production")
        if ref["venueId"] not in state.venues:
            raise not_found("venue")
        _check_production(ref, ticket_type)
        # Checked before the event is created, so a refused ticket leaves no event behind.
        _check_window(state, ref["scheduledStartDate"])
        key = (ref["productionId"], ref["venueId"], ref["scheduledStartDate"])
        found = [e for e in state.events.values() if _event_key(e) == key]
        event = found[0] if found else state.created(ref)
        state.events[event["id"]] = event
    return event


def _check_production(event: Record, ticket_type: Record) -> None:
    if event["productionId"] != ticket_type["productionId"]:
        raise invalid("ticketTypeId belongs to another production than the event")


def _event_key(event: Record) -> tuple[str, str, str]:
    return event["productionId"], event["venueId"], event["scheduledStartDate"]


def issue(state: State, message: Record) -> Record:
    required(message, "ticketTypeId")
    ticket_type = state.ticket_type(message["ticketTypeId"])
    if not (message.get("eventId") or message.get("event")):
        raise invalid("eventId or event is required")
    number = message.get("ticketNumber", "")
    # The ticket type fixes the production (the event must match it), so duplicates are
    # refused before an event could be created.
    production_id = ticket_type["productionId"]
    if number and (production_id, number) in state.ticket_ids:
        raise duplicate(state.faults.duplicates, "ticket", "ticketNumber", number)
    event = _find_or_create_event(state, message, ticket_type)
    ticket = state.created({k: v for k, v in message.items() if k != "event"})
    ticket.update(
        eventId=event["id"],
        status="ISSUED",
        optOut="ON" if message.get("optOut") else "OFF",  # a bool here, a Toggle on Ticket
    )
    state.tickets[ticket["id"]] = ticket
    if number:
        state.ticket_ids[(production_id, number)] = ticket["id"]
    return {"id": ticket["id"]}


def find_ticket(state: State, ref: Record) -> Record:
    if ref.get("ticketId") and ref.get("ticketNumber"):
        # TicketId is a oneof: PassKit refuses a ticket named both ways.
        raise invalid("ticket: should not have multiple id oneof fields")
    if ref.get("ticketId"):
        ticket = state.tickets.get(ref["ticketId"])
        if ticket is None:
            raise not_found("ticket")
        return ticket
    number = ref.get("ticketNumber")
    if number:
        for name in ("productionId", "ticketNumber"):
            if not number.get(name):
                raise invalid(f"ticketNumber.{name} is required")
        ticket_id = state.ticket_ids.get((number["productionId"], number["ticketNumber"]))
        if ticket_id is None:
            raise not_found("ticket")
        return state.tickets[ticket_id]
    raise invalid("ticketId or ticketNumber is required")


def redeem(state: State, message: Record) -> Record:
    required(message, "ticket")
    ticket = find_ticket(state, message["ticket"])
    if ticket["status"] == "REDEEMED":
        raise precondition("ticket has already been redeemed")
    details = dict(message.get("redemptionDetails", {}))
    details["redemptionDate"] = state.stamp()
    ticket.update(status="REDEEMED", redemptionDetails=details)
    state.touch(ticket)
    return {"id": ticket["id"]}


def event_record(state: State, event: Record) -> Record:
    production = state.productions[event["productionId"]]
    venue = state.venues[event["venueId"]]
    return event | {
        "production": proto.render(PRODUCTION, production),
        "venue": proto.render(VENUE, venue),
    }


def render_ticket(state: State, ticket: Record) -> Record:
    record = ticket | {
        "ticketType": state.ticket_types[ticket["ticketTypeId"]],
        "event": event_record(state, state.events[ticket["eventId"]]),
    }
    return proto.render(TICKET, record)


def get_by_id(state: State, message: Record) -> Record:
    return render_ticket(state, find_ticket(state, {"ticketId": message.get("id")}))


def get_by_number(state: State, message: Record) -> Record:
    ref = {k: message.get(k, "") for k in ("productionId", "ticketNumber")}
    return render_ticket(state, find_ticket(state, {"ticketNumber": ref}))

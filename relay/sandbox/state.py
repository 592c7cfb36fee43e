"""The sandbox's in-memory account: records, ids, the clock, set-up calls and the demo seed.

Pure Python (no Starlette): the app decodes a request with `proto.decode`, calls one operation
function with this state and the decoded message, and renders what comes back. Records are
plain dicts shaped like PassKit's JSON (see `messages`), so rendering them is a lookup.
The pass operations live next door: `members`, `coupons`, `tickets`.

The seed is one small account with fixed 22-character ids, so `relay demo` can mint hooks
before anything has been created:

    program  DEMO_PROGRAM_ID     "Sandbox Coffee Club", tiers "base", "silver", "gold"
    program  DEMO_DRAFT_PROGRAM_ID  "Sandbox Tea Club" (still in draft), tier "base"
    campaign DEMO_CAMPAIGN_ID    "Sandbox Welcome Coupons", offer DEMO_OFFER_ID
    event    DEMO_PRODUCTION_ID  "Sandbox Live" at DEMO_VENUE_ID, ticket type DEMO_TICKET_TYPE_ID
"""

from __future__ import annotations

import random
import secrets
import string
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from relay.sandbox import proto
from relay.sandbox.errors import exists, invalid, not_found
from relay.sandbox.faults import Faults, choose_fault
from relay.sandbox.messages import CAMPAIGN, OFFER, PRODUCTION, PROGRAM, TICKET_TYPE, TIER, VENUE

Record = dict[str, Any]
Clock = Callable[[], float]

ID_ALPHABET = string.digits + string.ascii_letters  # base62, like PassKit's ids
ID_LENGTH = 22
CALL_LOG = 20_000  # API calls whose arrival time is kept (the oldest are forgotten)

DEMO_PROGRAM_ID = "SandboxProgram00000001"
DEMO_TIER_IDS = ("base", "silver", "gold")
DEMO_DRAFT_PROGRAM_ID = "SandboxDraftProgram001"
PUBLISHED = ["PROJECT_PUBLISHED", "PROJECT_ACTIVE_FOR_OBJECT_CREATION"]
DEMO_CAMPAIGN_ID = "SandboxCampaign0000001"
DEMO_OFFER_ID = "SandboxOffer0000000001"
DEMO_PRODUCTION_ID = "SandboxProduction00001"
DEMO_VENUE_ID = "SandboxVenue0000000001"
DEMO_TICKET_TYPE_ID = "SandboxTicketType00001"


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def required(message: Record, *names: str) -> None:
    """PassKit's own checks after decoding: a required field that is unset or empty."""
    for name in names:
        if not message.get(name):
            raise invalid(f"{name} is required")


class State:
    """Everything the fake PassKit account holds, plus what tests want to observe."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        seed: bool = True,
        random_seed: int | None = None,
        pass_url: str = "",
        faults: Faults | None = None,
        error_shape: str = "gateway",
        account_elsewhere: bool = False,
    ) -> None:
        self.clock = clock
        # True: this account lives in the other region, and every call is answered as there
        self.initial_account_elsewhere = account_elsewhere
        self.initial_error_shape = error_shape  # see errors.ERROR_SHAPES
        self.seeded = seed
        self.random_seed = random_seed
        self.pass_url = pass_url  # where pass pages live, e.g. https://host/pass
        self.initial_faults = faults or Faults()
        self.reset()

    def reset(self) -> None:
        """Back to the start: seed data only, counters cleared, faults and error shape as
        configured (off and "gateway" by default), RNG reseeded."""
        self.programs: dict[str, Record] = {}
        self.tiers: dict[tuple[str, str], Record] = {}
        self.members: dict[str, Record] = {}
        self.member_ids: dict[tuple[str, str], str] = {}  # (programId, externalId) → id
        self.member_events: list[Record] = []
        self.campaigns: dict[str, Record] = {}
        self.offers: dict[str, Record] = {}
        self.coupons: dict[str, Record] = {}
        self.coupon_ids: dict[tuple[str, str], str] = {}  # (campaignId, externalId) → id
        self.productions: dict[str, Record] = {}
        self.venues: dict[str, Record] = {}
        self.ticket_types: dict[str, Record] = {}
        self.events: dict[str, Record] = {}
        self.tickets: dict[str, Record] = {}
        self.ticket_ids: dict[tuple[str, str], str] = {}  # (productionId, ticketNumber) → id
        self.emails: list[Record] = []
        self.calls: Counter[str] = Counter()
        # When each API call arrived (time.monotonic) and its route, and when each fault was
        # answered: tests count the calls in any one-second window (PASSKIT_RATE_LIMIT) and
        # see that none came during the pause a 429 asked for.
        self.call_log: deque[tuple[float, str]] = deque(maxlen=CALL_LOG)
        self.fault_log: deque[tuple[float, str]] = deque(maxlen=CALL_LOG)
        self.faults_injected: Counter[str] = Counter()
        self.faults = self.initial_faults
        self.error_shape = self.initial_error_shape
        self.account_elsewhere = self.initial_account_elsewhere
        self.rng = random.Random(self.random_seed)  # noqa: S311 - faults, not secrets
        if self.seeded:
            seed_demo(self)

    # -- time and records -------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def stamp(self) -> str:
        return proto.format_timestamp(self.now())

    def created(self, message: Record, record_id: str | None = None) -> Record:
        """A new record from a request: read-only fields dropped, then a fresh id (or the
        seed's fixed one) and created/updated stamps."""
        now = self.stamp()
        record = {k: v for k, v in message.items() if k not in ("id", "created", "updated")}
        record.update(id=record_id or new_id(), created=now, updated=now)
        return record

    def touch(self, record: Record) -> None:
        record["updated"] = self.stamp()

    # -- lookups used by the operations ----------------------------------------------------

    def program(self, program_id: str) -> Record:
        if program_id not in self.programs:
            raise not_found("program")
        return self.programs[program_id]

    def tier(self, program_id: str, tier_id: str) -> Record:
        if (program_id, tier_id) not in self.tiers:
            raise not_found("tier")
        return self.tiers[(program_id, tier_id)]

    def ticket_type(self, ticket_type_id: str) -> Record:
        if ticket_type_id not in self.ticket_types:
            raise not_found("ticket type")
        return self.ticket_types[ticket_type_id]

    # -- set-up calls: what a real account gets from the portal -----------------------------

    def create_program(self, message: Record, record_id: str | None = None) -> Record:
        required(message, "name")
        program = self.created(message, record_id)
        program.setdefault("status", ["PROJECT_DRAFT", "PROJECT_ACTIVE_FOR_OBJECT_CREATION"])
        self._unique(self.programs, program["id"], "program")
        self.programs[program["id"]] = program
        return {"id": program["id"]}

    def create_tier(self, message: Record) -> Record:
        required(message, "id", "programId", "name")
        self.program(message["programId"])
        if message["id"] != message["id"].lower():
            raise invalid("tier id must be lower case")  # PassKit: "lower case, unique"
        key = (message["programId"], message["id"])
        if key in self.tiers:
            raise exists(f"tier with id {message['id']} already exists")
        tier = self.created(message, message["id"])  # tier ids are the customer's choice
        tier.setdefault("timezone", "Etc/UTC")
        self.tiers[key] = tier
        return {"id": tier["id"]}

    def create_campaign(self, message: Record, record_id: str | None = None) -> Record:
        required(message, "name")
        campaign = self.created(message, record_id)
        campaign.setdefault("status", ["PROJECT_DRAFT", "PROJECT_ACTIVE_FOR_OBJECT_CREATION"])
        self._unique(self.campaigns, campaign["id"], "campaign")
        self.campaigns[campaign["id"]] = campaign
        return {"id": campaign["id"]}

    def create_offer(self, message: Record, record_id: str | None = None) -> Record:
        # PassKit also requires `beforeRedeemPassTemplateId`; the sandbox has no templates.
        required(message, "campaignId", "offerTitle", "offerDetails")
        if message["campaignId"] not in self.campaigns:
            raise not_found("campaign")
        offer = self.created(message, record_id)
        self._unique(self.offers, offer["id"], "offer")
        self.offers[offer["id"]] = offer
        return {"id": offer["id"]}

    def create_production(self, message: Record, record_id: str | None = None) -> Record:
        required(message, "name")
        production = self.created(message, record_id)
        self._unique(self.productions, production["id"], "production")
        self.productions[production["id"]] = production
        return {"id": production["id"]}

    def create_venue(self, message: Record, record_id: str | None = None) -> Record:
        required(message, "name")
        venue = self.created(message, record_id)
        venue.setdefault("timezone", "Etc/UTC")
        self._unique(self.venues, venue["id"], "venue")
        self.venues[venue["id"]] = venue
        return {"id": venue["id"]}

    def create_ticket_type(self, message: Record, record_id: str | None = None) -> Record:
        required(message, "productionId", "name")
        if message["productionId"] not in self.productions:
            raise not_found("production")
        ticket_type = self.created(message, record_id)
        self._unique(self.ticket_types, ticket_type["id"], "ticket type")
        self.ticket_types[ticket_type["id"]] = ticket_type
        return {"id": ticket_type["id"]}

    # -- lists: PassKit's server-streamed list calls, each record rendered as PassKit prints it

    def list_programs(self, message: Record) -> list[Record]:
        return page_of(message, [proto.render(PROGRAM, r) for r in self.programs.values()])

    def list_tiers(self, message: Record) -> list[Record]:
        self.program(message.get("programId", ""))
        tiers = [r for (p, _), r in self.tiers.items() if p == message["programId"]]
        tiers.sort(key=lambda tier: tier.get("tierIndex", 0))
        return page_of(message.get("filters"), [proto.render(TIER, r) for r in tiers])

    def list_campaigns(self, message: Record) -> list[Record]:
        return page_of(message, [proto.render(CAMPAIGN, r) for r in self.campaigns.values()])

    def list_offers(self, message: Record) -> list[Record]:
        if message.get("campaignId") not in self.campaigns:
            raise not_found("campaign")
        offers = [r for r in self.offers.values() if r["campaignId"] == message["campaignId"]]
        return page_of(message.get("filters"), [proto.render(OFFER, r) for r in offers])

    def list_productions(self, message: Record) -> list[Record]:
        productions = self.productions.values()
        return page_of(message, [proto.render(PRODUCTION, r) for r in productions])

    def list_venues(self, message: Record) -> list[Record]:
        return page_of(message, [proto.render(VENUE, r) for r in self.venues.values()])

    def list_ticket_types(self, message: Record) -> list[Record]:
        if message.get("productionId") not in self.productions:
            raise not_found("production")
        production_id = message["productionId"]
        types = [r for r in self.ticket_types.values() if r["productionId"] == production_id]
        return page_of(message.get("filters"), [proto.render(TICKET_TYPE, r) for r in types])

    @staticmethod
    def _unique(table: dict[str, Record], record_id: str, what: str) -> None:
        # Only the seed passes fixed ids; a clash means the seed ran twice.
        if record_id in table:
            raise exists(f"{what} with id {record_id} already exists")

    # -- calls and faults ---------------------------------------------------------------------

    def count_call(self, key: str) -> None:
        """An API call arrived: counted in `calls`, its time kept in `call_log`."""
        self.calls[key] += 1
        self.call_log.append((time.monotonic(), key))

    def choose_fault(self, rpc: str = "") -> str | None:
        """The fault for the call just counted (to the RPC method named `rpc`): 503 when
        `down` names it, one of `next_429`'s or `drop_after_next`'s, else a seeded draw."""
        fault: str | None
        if rpc and rpc in self.faults.down:
            fault = "503"
        elif self.faults.next_429 > 0:
            self.faults = replace(self.faults, next_429=self.faults.next_429 - 1)
            fault = "429"
        elif self.faults.drop_after_next > 0:
            self.faults = replace(self.faults, drop_after_next=self.faults.drop_after_next - 1)
            fault = "drop_after"
        else:
            fault = choose_fault(self.faults, self.rng)
        if fault:
            self.fault_log.append((time.monotonic(), fault))
        return fault

    def most_calls_in(self, seconds: float = 1.0) -> int:
        """The most API calls that arrived within any window of `seconds`."""
        times = sorted(at for at, _ in self.call_log)
        most, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= seconds:
                first += 1
            most = max(most, last - first + 1)
        return most

    def call_record(self) -> dict[str, Any]:
        """What `GET /_sandbox/calls` shows: each API call's arrival and route, each fault's
        time and kind (this process's monotonic seconds), and the most calls in one second."""
        return {
            "calls": [list(entry) for entry in self.call_log],
            "faults": [list(entry) for entry in self.fault_log],
            "mostInOneSecond": self.most_calls_in(1.0),
        }

    # -- observation for tests ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What `GET /_sandbox/state` shows: counts, records, emails, calls and faults."""
        tables = {
            "programs": self.programs,
            "tiers": {f"{p}/{t}": r for (p, t), r in self.tiers.items()},
            "members": self.members,
            "campaigns": self.campaigns,
            "offers": self.offers,
            "coupons": self.coupons,
            "productions": self.productions,
            "venues": self.venues,
            "ticketTypes": self.ticket_types,
            "events": self.events,
            "tickets": self.tickets,
        }
        return {
            "counts": {name: len(table) for name, table in tables.items()}
            | {"memberEvents": len(self.member_events), "emails": len(self.emails)},
            **{name: list(table.values()) for name, table in tables.items()},
            "memberEvents": self.member_events,
            "emails": self.emails,
            "calls": dict(self.calls),
            "faultsInjected": dict(self.faults_injected),
            "mostCallsInOneSecond": self.most_calls_in(1.0),
        }


def page_of(filters: Record | None, records: list[Record]) -> list[Record]:
    """io.Filters' `offset` and `limit` (0: no limit) over a list."""
    filters = filters or {}
    start = max(int(filters.get("offset") or 0), 0)
    limit = int(filters.get("limit") or 0)
    return records[start : start + limit] if limit > 0 else records[start:]


def seed_demo(state: State) -> None:
    """The demo account (ids documented in the module docstring)."""
    state.create_program({"name": "Sandbox Coffee Club", "status": PUBLISHED}, DEMO_PROGRAM_ID)
    for index, tier_id in enumerate(DEMO_TIER_IDS):
        state.create_tier(
            {
                "id": tier_id,
                "programId": DEMO_PROGRAM_ID,
                "name": tier_id.title(),
                "tierIndex": index,
            }
        )
    state.create_program({"name": "Sandbox Tea Club"}, DEMO_DRAFT_PROGRAM_ID)  # a draft
    state.create_tier({"id": "base", "programId": DEMO_DRAFT_PROGRAM_ID, "name": "Base"})
    state.create_campaign({"name": "Sandbox Welcome Coupons", "status": PUBLISHED},
                          DEMO_CAMPAIGN_ID)  # fmt: skip
    state.create_offer(
        {
            "campaignId": DEMO_CAMPAIGN_ID,
            "offerTitle": "10% off your next order",
            "offerShortTitle": "10% off",
            "offerDetails": "One use per customer.",
        },
        DEMO_OFFER_ID,
    )
    state.create_production({"name": "Sandbox Live", "status": PUBLISHED}, DEMO_PRODUCTION_ID)
    state.create_venue({"name": "Sandbox Arena", "address": "1 Demo Street"}, DEMO_VENUE_ID)
    state.create_ticket_type(
        {"productionId": DEMO_PRODUCTION_ID, "name": "General Admission"}, DEMO_TICKET_TYPE_ID
    )

"""Every delivery in one sentence, for the operator: who and what happened.

    words = Lexicon.of(account, library)  # PassKit's names, each template's operation
    describe(record, words, hook.params).text
    # "Enrolled Mara Quist (HS-4242) in Base with 30 points"

Who is read from what the log kept, best first: the request sent to PassKit, PassKit's answer
(a lookup answers with the whole record), then the fields that arrived (a Stripe event's
object). With RELAY_LOG_PAYLOADS=off none of them is kept and the sentence says "a member".
A failure reads "Not sent: <cause> — <fix>" from relay.ui.fixes, and what was tried follows
in `detail`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.delivery.templating import TemplateLibrary
from relay.events.flatten import sentence as event_sentence
from relay.passkit.account import Account
from relay.passkit.operations import CATALOG, Operation, dig
from relay.redact import MASK
from relay.store import DeliveryRecord, HookRecord
from relay.ui.fixes import failure_of

NAMES_WAIT = 1.5  # seconds a list waits for PassKit's names before showing ids

# The badge's words and look for each outcome (the CSS class is `badge <outcome>`).
OUTCOME_WORDS = {
    "ok": "Succeeded",
    "failed": "Failed",
    "dry_run": "Dry run",
    "duplicate": "Already done",
    "skipped": "Skipped",
    "ignored": "Ignored",
}

# What each Stripe template is about, said after the change it made.
STRIPE_WHY = {
    "stripe/checkout.session.completed": "after a Stripe checkout",
    "stripe/invoice.paid": "after a paid Stripe invoice",
    "stripe/customer.subscription.updated": "after a Stripe plan change",
    "stripe/customer.subscription.deleted": "as their Stripe subscription ended",
    "stripe/invoice.payment_failed": "after a failed Stripe payment",
    "stripe/charge.refunded": "after a Stripe refund",
}


@dataclass(frozen=True)
class Lexicon:
    """What the sentences need besides the record: PassKit's names for the ids the relay knows
    (from the console's cached Account; an id stays an id otherwise), and which operation each
    template performs (a delivery refused before rendering logs no operation)."""

    names: Mapping[str, str] = field(default_factory=dict)
    tiers: Mapping[tuple[str, str], str] = field(default_factory=dict)
    operations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, account: Account | None, library: TemplateLibrary | None) -> Lexicon:
        names: dict[str, str] = {}
        tiers: dict[tuple[str, str], str] = {}
        if account is not None:
            for project in (*account.programs, *account.campaigns, *account.productions):
                names[project.id] = project.name
                for child in project.children:
                    names.setdefault(child.id, child.name)
                    tiers[(project.id, child.id)] = child.name
            names.update((venue.id, venue.name) for venue in account.venues)
        templates = library.templates if library else {}
        operations = {name: t.operation.name for name, t in templates.items()}
        return cls(names, tiers, operations)

    def name(self, some_id: str) -> str:
        return self.names.get(some_id) or some_id

    def tier(self, program_id: str, tier_id: str) -> str:
        return self.tiers.get((program_id, tier_id)) or self.names.get(tier_id) or tier_id


@dataclass(frozen=True)
class Sentence:
    text: str  # the headline: "Added 20 points to Mara Quist (HS-4242)"
    who: str  # "Mara Quist (HS-4242)", or "a member" when the log kept nobody
    detail: str = ""  # a failure's "Tried to enrol Mara Quist (HS-4242)"; a skip's who


def _text(value: Any) -> str:
    """A plain, shown value: text or a number, never a masked one."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    return "" if MASK in text else text


@dataclass
class Facts:
    """What the log says about one delivery, from its best source."""

    operation: Operation | None
    sent: Mapping[str, Any]
    answer: Mapping[str, Any]
    fields: Mapping[str, Any]
    params: Mapping[str, str]

    def first(self, *paths: str) -> str:
        """The first value found for the dotted `paths`: in what was sent, then in PassKit's
        answer (an event's `member` before the event), then each `form:` path among the fields
        that arrived and `param:` among the hook's settings."""
        plain = [tuple(path.split(".")) for path in paths if ":" not in path]
        for source in (self.sent, dig(self.answer, ("member",)), self.answer):
            for keys in plain:
                if found := _text(dig(source, keys)):
                    return found
        for path in paths:
            kind, _, name = path.partition(":")
            if kind == "form":
                found = _text(self.fields.get(name, dig(self.fields, tuple(name.split(".")))))
            elif kind == "param":
                found = _text(self.params.get(name))
            else:
                continue
            if found:
                return found
        return ""

    @property
    def name(self) -> str:
        sent = " ".join(filter(None, (self.first("person.forename"), self.first("person.surname"))))
        typed = " ".join(
            filter(None, (self.first("form:first_name"), self.first("form:last_name")))
        )
        return (
            self.first("person.displayName")
            or sent
            or self.first("form:display_name", "form:name")
            or typed
            or self.first("form:customer_details.name", "form:customer_name")
        )

    @property
    def email(self) -> str:
        return self.first("person.emailAddress", "form:email", "form:customer_email")

    @property
    def external_id(self) -> str:
        return self.first(
            "externalId",
            "externalMemberId",
            "form:external_id",
            "form:metadata.passkit_external_id",
            "form:customer",
        )

    @property
    def pass_id(self) -> str:
        op = self.operation
        found = (
            (dig(self.answer, op.id_in_answer) or dig(self.sent, op.id_in_request)) if op else None
        )
        return _text(found) or self.first("form:member_id", "form:coupon_id", "form:ticket_id")

    def who(self, noun: str) -> str:
        """Name, else email, else external id (the external id in brackets after the others);
        else PassKit's id; else `noun` ("a member")."""
        first = self.name or self.email
        ext = self.external_id
        if first and ext and ext != first:
            return f"{first} ({ext})"
        pass_id = self.pass_id
        return first or ext or (f"{noun.split()[-1]} {pass_id}" if pass_id else noun)


def _facts(record: DeliveryRecord, words: Lexicon, params: Mapping[str, str]) -> Facts:
    name = record.operation or words.operations.get(record.template, "")
    sent = dig(record.passkit_request, ("json",))
    answer = dig(record.passkit_response, ("json",))
    fields = record.request if isinstance(record.request, Mapping) else {}
    if record.source == "stripe":  # the event's object stands for the fields
        found = dig(fields, ("data", "object"))
        fields = {**(found if isinstance(found, Mapping) else {}), "type": fields.get("type")}
    return Facts(CATALOG.get(name), sent if isinstance(sent, Mapping) else {},
                 answer if isinstance(answer, Mapping) else {}, fields, params)  # fmt: skip


def _points(text: str) -> str:
    return f"{text} point{'' if text == '1' else 's'}"


# What an operation did: (past verb, plain verb, the rest of the sentence).
Phrase = tuple[str, str, str]


def _phrase(f: Facts, words: Lexicon, record: DeliveryRecord) -> Phrase:
    op = f.operation.name if f.operation else ""
    member = f.who("a member")
    method = dig(record.passkit_request, ("method",))
    joining = op == "members.enrol" or (op == "members.upsert" and method == "POST")
    # The hook's default tier counts only where a member joins: an update keeps their tier.
    tier_id = f.first("tierId", "form:tier", *(("param:tier_id",) if joining else ()))
    program = f.first("programId", "param:program_id")
    tier = words.tier(program, tier_id.lower()) if tier_id else ""
    points = f.first("points", "form:points")
    changes = ", ".join(filter(None, (tier and f"tier {tier}", points and _points(points))))
    if record.template == "stripe/invoice.payment_failed":
        return "Marked", "mark", f"{member} as past due"
    if joining:
        starting = f" with {_points(points)}" if points not in ("", "0") else ""
        return "Enrolled", "enrol", member + (f" in {tier}" if tier else "") + starting
    if op == "members.upsert" and not method:  # which of the two is not logged
        return "Enrolled or updated", "enrol or update", member
    if op in ("members.upsert", "members.update"):
        return "Updated", "update", member + (f": {changes}" if changes else "")
    if op == "distribution.email":
        email = f.first("alternativeEmail")
        rest = f"the pass link of {member} to {email}" if email else f"{member} their pass link"
        return "Emailed", "email", rest
    return _other(op, f, words, member, tier, points)


def _other(op: str, f: Facts, words: Lexicon, member: str, tier: str, points: str) -> Phrase:
    place = f.first("address", "form:location")
    at = f" at {place}" if place else ""
    holder = f.name or f.email
    to = f" to {holder}" if holder else ""
    code = f.first("externalId", "form:external_id") or f.pass_id
    coupon = f"coupon {code}".rstrip()
    number = f.first("ticketNumber", "ticket.ticketNumber.ticketNumber", "form:ticket_number")
    ticket = f"ticket {number or f.first('ticket.ticketId', 'form:ticket_id')}".rstrip()
    offer = f.first("offerId", "param:offer_id")
    # An expiry given as a day is the end of that day: said as the day.
    expiry = f.first("form:expiry", "expiryDate").removesuffix("T23:59:59Z") or "a new date"
    kind = f.first("ticketTypeId", "param:ticket_type_id")
    phrases: dict[str, Phrase] = {
        "members.delete": ("Deleted", "delete", f"{member} and their pass"),
        "members.lookup": ("Looked up", "look up", member),
        "members.find": ("Looked up", "look up", member),
        "members.points.earn": ("Added", "add", f"{_points(points)} to {member}"),
        "members.points.burn": ("Took", "take", f"{_points(points)} from {member}"),
        "members.points.set": ("Set", "set", f"the points of {member} to {points or '?'}"),
        "members.tier.change": ("Moved", "move", f"{member} to {tier or 'another tier'}"),
        "members.check_in": ("Checked in", "check in", member + at),
        "members.check_out": ("Checked out", "check out", member + at),
        "members.expiry.update": ("Set", "set", f"the expiry of {member} to {expiry}"),
        "coupons.issue": ("Issued", "issue", coupon + _of(words, offer) + to),
        "coupons.lookup": ("Looked up", "look up", coupon),
        "coupons.redeem": ("Redeemed", "redeem", coupon),
        "coupons.void": ("Voided", "void", coupon),
        "tickets.issue": ("Issued", "issue", ticket + _of(words, kind) + to),
        "tickets.lookup": ("Looked up", "look up", ticket),
        "tickets.redeem": ("Redeemed", "redeem", ticket),
    }
    return phrases.get(op, ("Handled", "handle", f"a delivery for {member}"))


def _of(words: Lexicon, some_id: str) -> str:
    return f" ({words.name(some_id)})" if some_id else ""


def describe(
    record: DeliveryRecord, words: Lexicon | None = None, params: Mapping[str, str] | None = None
) -> Sentence:
    """`record` in one sentence; `params` are its hook's settings (a default tier, say)."""
    words = words or Lexicon()
    facts = _facts(record, words, params or {})
    past, plain, rest = _phrase(facts, words, record)
    who = facts.who("a member")
    why = STRIPE_WHY.get(record.template, "")
    event = _text(facts.fields.get("type")) if record.source == "stripe" else ""
    reason = (record.error_message or "").strip()
    sayings: dict[str, Callable[[], Sentence]] = {
        "ok": lambda: Sentence(f"{past} {rest}" + (f" {why}" if why else ""), who),
        "dry_run": lambda: Sentence(f"Dry run: would {plain} {rest}", who),
        "duplicate": lambda: Sentence(f"Already {past.lower()}: {rest}", who),
        "skipped": lambda: Sentence(
            f"Skipped{f' Stripe event {event}' if event else ''}: {reason or 'nothing to do'}",
            who, "" if who == "a member" else f"About {who}"),
        "ignored": lambda: Sentence(_ignored(event, reason, plain, who), who),
    }  # fmt: skip
    if record.source == "passkit" and record.outcome == "ok":  # "Pass installed by Mara Quist"
        return Sentence(f"{event_sentence(facts.fields)}: queued for your Zap or scenario", who)
    if record.outcome in sayings:
        return sayings[record.outcome]()
    # The cause alone: short enough for a heading, a list row and a tab title; the fix is
    # said once, on the delivery's page, under "How to fix it".
    failure = failure_of(record)
    cause = failure.cause if failure else reason or "it failed"
    return Sentence(f"Not sent: {cause}", who, f"Tried to {plain} {rest}")


def _ignored(event: str, reason: str, plain: str, who: str) -> str:
    source = f" Stripe event {event}" if event else ""
    if reason.startswith("no template"):
        return f"Ignored{source}: this relay has no template for it"
    return f"Ignored{source}: {who} is not in PassKit, so there was nothing to {plain}"


def hook_label(hook: HookRecord | None, record: DeliveryRecord, library: TemplateLibrary) -> str:
    """How the operator knows the hook: its label, else what its template does."""
    if hook is not None and hook.label:
        return hook.label
    if record.source == "stripe":
        return "Stripe endpoint"
    template = library.get(hook.template if hook else record.template)
    return template.summary if template else "A hook"


@dataclass(frozen=True)
class Row:
    """One delivery as a list shows it."""

    record: DeliveryRecord
    sentence: Sentence
    hook: str  # the hook's label (or what it does)
    outcome: str  # the badge's words


def rows(
    records: list[DeliveryRecord],
    hooks: Mapping[str, HookRecord],
    words: Lexicon,
    library: TemplateLibrary,
) -> list[Row]:
    out = []
    for record in records:
        hook = hooks.get(record.hook_id or "")
        sentence = describe(record, words, hook.params if hook else None)
        label = hook_label(hook, record, library)
        out.append(Row(record, sentence, label, OUTCOME_WORDS.get(record.outcome, record.outcome)))
    return out


async def lexicon(
    read: Callable[[], Awaitable[tuple[Account | None, str]]],
    library: TemplateLibrary,
    wait: float = NAMES_WAIT,
) -> Lexicon:
    """The Lexicon with PassKit's names when the console's account can be read within `wait`
    seconds (it is cached for a minute); ids otherwise: a slow PassKit never holds a page."""
    try:
        account, _ = await asyncio.wait_for(read(), wait)
    except TimeoutError:
        account = None
    return Lexicon.of(account, library)

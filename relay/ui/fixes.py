"""A failed delivery explained for the operator: what went wrong and what to change, in words,
and whether sending it again as it is could turn out differently.

Read from the delivery log alone (error code, the field it names, the masked message, the hint
the sender got, the logged fields and PassKit's answer), so old deliveries are explained too.
Every code in relay.errors (and the Stripe, idempotency and GET refusals) has its words here;
nothing a Python exception says ever reaches `cause` or `fix`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from relay.passkit.client import passkit_message
from relay.passkit.operations import CATALOG
from relay.redact import MASK
from relay.store import DeliveryRecord

# Failures that may pass on a second try with the same fields: PassKit was busy, slow or away.
TRANSIENT = frozenset(
    {"passkit_unavailable", "passkit_busy", "passkit_timeout", "rate_limited", "internal_error",
     "client_gone", "in_progress"}
)  # fmt: skip
# Failures fixed outside the fields (in PassKit, or the relay's set-up): once fixed, the same
# fields go through, so Replay is the way to send them again.
FIXED_ELSEWHERE = frozenset({"passkit_auth", "passkit_rejected", "not_found", "template_error"})
# Failures of the hook URL itself (or how it was called): every delivery through it fails so.
HOOK_LEVEL = frozenset(
    {"invalid_token", "revoked_token", "wrong_endpoint", "template_missing",
     "hook_misconfigured", "invalid_signature", "not_configured", "headers_too_large",
     "body_timeout", "body_too_large", "unsupported_media_type", "invalid_body"}
)  # fmt: skip
DATA_ROWS = "in the zap's Data rows (Make: the HTTP module's fields)"
NEW_URL = "make a new hook URL (Hooks › New hook), put it in the zap and revoke this one"
# Text that reads like Python rather than words: never shown, a plain sentence stands in.
_PYTHONIC = re.compile(r"Traceback|\b[A-Z]\w*(?:Error|Exception)\b|\bline \d+\b|\bNone\b")
_WORDS = {"id": "ID", "url": "URL"}


@dataclass(frozen=True)
class Failure:
    cause: str  # what went wrong, in words: "the email is missing"
    fix: str  # what to change, in words: "Map Email in the zap's Data rows."
    field: str | None  # the field it is about, when there is one
    can_replay: bool  # replaying the same fields could change the outcome
    why_not: str  # when it cannot: why a replay as it is would fail the same way
    tip: str = ""  # more help on the fix, in Zapier/Make words (the hint the sender got)
    can_edit: bool = False  # its logged fields can be edited and sent again
    why_no_edit: str = ""  # when they cannot, why not
    cause_unquoted: str = ""  # `cause` without anything that was sent (for alerts and logs)


@dataclass(frozen=True)
class Choices:
    """What the PassKit account has where a failure's id was looked for (read from the
    console's account cache, never from PassKit per page view): "Harbour Gym" has Base,
    Silver, Gold."""

    owner: str  # the program's (campaign's, production's) name
    names: tuple[str, ...]  # its tiers' (offers', ticket types') names, with the id if it differs


# What PassKit could not find → the fields a zap may send it in (the first sent counts), and
# the hook setting it comes from otherwise.
_IDS: dict[str, tuple[tuple[str, ...], str]] = {
    "tier": (("tier", "tier_id"), "tier_id"),
    "program": (("program_id", "program"), "program_id"),
    "offer": (("offer", "offer_id"), "offer_id"),
    "campaign": (("campaign_id", "campaign"), "campaign_id"),
    "ticket type": (("ticket_type", "ticket_type_id"), "ticket_type_id"),
    "production": (("production_id", "production"), "production_id"),
    "event": (("event_id", "event"), "event_id"),
}
_NOT_FOUND = re.compile(r"\b(tier|program|offer|campaign|ticket ?type|production|event)\b.{0,40}"
                        r"not found", re.I)  # fmt: skip


def missing_kind(record: DeliveryRecord) -> str | None:
    """What PassKit had no record of ("tier", "offer"…), from its answer, when it was kept."""
    if record.error_code != "not_found":
        return None
    answer = (
        record.passkit_response.get("json") if isinstance(record.passkit_response, dict) else None
    )
    found = _NOT_FOUND.search(passkit_message(answer) if answer is not None else "")
    return found.group(1).lower().replace("tickettype", "ticket type") if found else None


def _unknown_id(
    record: DeliveryRecord, kind: str, quote: bool, choices: Choices | None
) -> tuple[str, str, str, str | None]:
    """The cause and fix of an id PassKit does not have, naming what the zap sent in the field
    it came from and the valid choices: "the zap sent Tier “platinum”; Harbour Gym has …"."""
    fields, setting = _IDS.get(kind, ((), ""))
    logged = record.request if isinstance(record.request, dict) else None
    sent = next((f for f in fields if logged is not None and f in logged), None)
    has = f"{choices.owner} has {_listed(choices.names)}" if choices else ""
    if sent is not None:
        value = _sent(record, sent) if quote else None
        shown = f" “{value}”" if value else ""
        kept = "" if value or not quote else " (what it sent was hidden in the log)"
        cause = f"the zap sent {label(sent)}{shown}, and PassKit has no {kind} with that ID{kept}"
        fix = (f"{has}: fix the zap's {label(sent)} mapping, or use Edit and resend." if has else
               f"Fix the zap's {label(sent)} mapping (it must be a {kind} ID PassKit has), or "
               "use Edit and resend.")  # fmt: skip
        return (
            cause,
            fix,
            f"{label(sent)} would still be{shown or ' the same'}: use Edit and resend.",
            sent,
        )
    if logged is None:
        cause = (f"PassKit has no {kind} with the ID that was used (from the zap's "
                 f"{label(fields[0]) if fields else 'fields'} or the hook's setting); what the "
                 "zap sent was not kept, as payload logging is off")  # fmt: skip
        fix = (f"{has}: check what the zap maps to {label(fields[0])} and the hook's "
               f"{label(setting)} setting." if has and fields else
               "Check the zap's mapping and the hook's settings against PassKit.")  # fmt: skip
        return cause, fix, "", fields[0] if fields else None
    cause = f"PassKit has no {kind} with the ID in this hook's {label(setting).lower()} setting"
    fix = (f"{has}: make a new hook URL with one of them (Hooks › New hook), or create the "
           f"{kind} in PassKit and Replay." if has else
           f"Create the {kind} in PassKit, then Replay; or {NEW_URL}.")  # fmt: skip
    return cause, fix, "", None


def _listed(names: tuple[str, ...]) -> str:
    if not names:
        return "none yet"
    shown = list(names[:8]) + (["…"] if len(names) > 8 else [])
    return ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]


def label(name: str) -> str:
    """A field or setting's name in words: first_name → First name, external_id → External ID."""
    words = [_WORDS.get(w.lower(), w) for w in re.split(r"[_\s]+", name.strip()) if w]
    text = " ".join(words) or name
    return text[:1].upper() + text[1:]


def _first_up(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower(name: str) -> str:
    words = label(name)
    return words if words[:2].isupper() else words[:1].lower() + words[1:]


def _sent(record: DeliveryRecord, field: str | None) -> str | None:
    """What the sender sent in `field`, as logged (short), unless it was masked."""
    if not field or not isinstance(record.request, dict):
        return None
    value = record.request.get(field)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip() or MASK in value:
        return None
    value = " ".join(value.split())
    return value if len(value) <= 40 else value[:39] + "…"


def _problem(record: DeliveryRecord, field: str | None) -> str:
    """The relay's words for what is wrong with the field: "must be a whole number"."""
    text = record.error_message or ""
    if field and text.startswith(f"{field}: "):
        text = text[len(field) + 2 :]
    elif field and text.startswith(f"{field} "):
        text = text[len(field) + 1 :]
    text = re.split(r" \(got\b| \(PassKit's|: \[redacted\]|; ", text)[0]
    text = text.split(". ")[0].strip().rstrip(".")
    return "" if MASK in text or _PYTHONIC.search(text) else text


def _is_not(problem: str) -> tuple[str, str]:
    """("is not a whole number", "a whole number") from "must be a whole number"."""
    wanted = problem.removeprefix("must be ").strip() if problem.startswith("must be ") else ""
    wanted = wanted.split(", not ")[0]
    if wanted.startswith(("at least ", "at most ", "between ", "one of ", "exactly ")):
        return problem, ""  # a range reads best as the relay says it
    return (f"is not {wanted}" if wanted else problem), wanted


def _missing(record: DeliveryRecord) -> tuple[str, str, str, str | None]:
    message = record.error_message or ""
    found = re.match(r"(.+?) (?:is|are) required", message)
    names = found.group(1) if found else (record.error_field or "")
    if " or " in names:
        options = [label(n) for n in names.split(" or ")]
        cause = (f"neither {options[0]} nor {options[1]} was sent" if len(options) == 2 else
                 f"none of {', '.join(options[:-1])} or {options[-1]} was sent")  # fmt: skip
        fix = f"Map {' or '.join(options)} {DATA_ROWS}."
    else:
        parts = [n.strip() for n in names.split(",") if n.strip()] or ["a field"]
        shown = [label(n) for n in parts]
        joined = " and ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
        verb = "are" if len(parts) > 1 else "is"
        cause = f"the {' and '.join(_lower(n) for n in parts)} {verb} missing"
        fix = f"Map {joined} {DATA_ROWS}."
    why = "The same fields would still lack it: add it with Edit and resend, or fix the zap."
    return cause, fix, why, record.error_field


def _invalid_field(record: DeliveryRecord, quote: bool) -> tuple[str, str, str]:
    field = record.error_field or ""
    name = _lower(field) if field else "a field"
    problem = _problem(record, field)
    if "broken character" in problem:
        problem = "holds a broken character"
    is_not, wanted = _is_not(problem) if problem else ("could not be read", "")
    value = _sent(record, field) if quote else None
    cause = f"{name} “{value}” {is_not}" if value else f"{name} {is_not}"
    if quote and record.request is None:
        cause += " (what the zap sent was not kept: payload logging is off)"
    fix = f"Send {wanted} in {label(field)}." if wanted and field else (
        f"Check what the zap maps to {label(field)} {DATA_ROWS}." if field else
        "Check the values the zap maps.")  # fmt: skip
    shown = f"“{value}”" if value else "the same value"
    why = (
        f"{label(field) if field else 'It'} would still be {shown}: change it with Edit and resend."
    )
    return cause, fix, why


def _passkit_words(record: DeliveryRecord) -> str:
    answer = (
        record.passkit_response.get("json") if isinstance(record.passkit_response, dict) else None
    )
    words = passkit_message(answer) if answer is not None else ""
    words = " ".join(words.split())
    if not words or words == "no message" or _PYTHONIC.search(words):
        return ""
    return words if len(words) <= 120 else words[:119] + "…"


def _explain(
    record: DeliveryRecord, quote: bool, choices: Choices | None = None
) -> tuple[str, str, str, str | None]:
    """(cause, fix, why a replay would not help, field) for the record's error code."""
    code, field = record.error_code or "", record.error_field
    stripe = record.source == "stripe"
    why_hook = "Every delivery through this hook URL fails this way until it is fixed."
    if code == "missing_field":
        return _missing(record)
    if code == "invalid_field":
        return (*_invalid_field(record, quote), field)
    if code == "invalid_request":
        if "is a hook setting" in (record.error_message or ""):
            setting = label(field or "a")
            return (f"this hook URL lacks its {setting.lower()} setting",
                    f"The {setting} setting is missing: {NEW_URL}.", why_hook, field)  # fmt: skip
        problem = _problem(record, field) if field else ""
        value = _sent(record, field) if quote else None
        about = f"{_lower(field)} “{value}”" if field and value else (
            _lower(field) if field else "what was sent")  # fmt: skip
        cause = f"{about} does not fit what PassKit expects" + (f" ({problem})" if problem else "")
        fix = (f"Check what the zap maps to {label(field)} {DATA_ROWS}; the hook's test page "
               "shows the request it makes." if field else "Check the values the zap maps; the "
               "hook's test page shows the request it makes.")  # fmt: skip
        return cause, fix, "The same fields would fail the same way: use Edit and resend.", field
    if code == "hook_misconfigured":
        setting = label(field or "a")
        return (f"this hook's {setting.lower()} setting is wrong",
                f"Make a new hook URL with the right {setting} (Hooks › New hook), put it in the "
                "zap and revoke this one.", why_hook, field)  # fmt: skip
    if code == "passkit_rejected":
        words = _passkit_words(record) if quote else ""
        cause = f"PassKit refused it: “{words}”" if words else "PassKit refused what was sent"
        fix = ("If a value is wrong, correct it with Edit and resend; if something is missing in "
               "PassKit (a tier, a program), add it there and Replay.")  # fmt: skip
        if stripe:
            fix = "Add what PassKit misses (a tier, a program) in PassKit, then Replay."
        return cause, fix, "", field
    if code == "not_found":
        operation = CATALOG.get(record.operation)
        kind = missing_kind(record)
        if kind is not None:
            return _unknown_id(record, kind, quote, choices)
        if record.request is None and operation and (operation.creates or operation.on_conflict):
            return ("PassKit has no program, tier or offer with an ID that was used (from the "
                    "zap's fields or the hook's settings); what the zap sent was not kept, as "
                    "payload logging is off",
                    "Check what the zap maps to Tier (and the like) and the hook's settings "
                    "against PassKit, then send it again from the zap.", "", field)  # fmt: skip
        if operation and (operation.creates or operation.on_conflict):
            return ("PassKit has no program, tier or campaign with the ids this hook sends",
                    "Check the hook's program and tier in PassKit (create the missing one "
                    "there), then Replay.", "", field)  # fmt: skip
        value = _sent(record, "external_id") if quote else None
        who = f"“{value}”" if value else "the external ID that was sent"
        return (f"PassKit has no pass for {who}",
                f"Check what the zap maps to External ID {DATA_ROWS}: it must name a pass "
                "PassKit has. Once it exists, Replay.", "", field)  # fmt: skip
    if code == "conflict":
        kind = (CATALOG[record.operation].kind if record.operation in CATALOG else "") or "record"
        value = _sent(record, "ticket_number" if kind == "ticket" else "external_id")
        who = f" “{value}”" if quote and value else ""
        fix = ("Use a member-upsert hook for this zap (it updates members who exist), or send a "
               "new External ID." if kind == "member" else
               f"Send a new {'ticket number' if kind == 'ticket' else 'External ID'}: each is "
               "issued once.")  # fmt: skip
        return (f"a {kind}{who} already exists in PassKit, made outside this relay", fix,
                "PassKit would still have it: change the fields or the hook.", field)  # fmt: skip
    explained = _SIMPLE.get(code)
    if explained is None:
        plain = (record.error_message or "").strip()
        cause = plain if plain and quote and not _PYTHONIC.search(plain) else "it failed"
        return cause, "", "", field
    cause, fix = explained
    if record.source == "passkit" and code in _PASSKIT_EVENTS:
        cause, fix = _PASSKIT_EVENTS[code]
    if stripe and code == "invalid_body":
        cause, fix = "Stripe's event could not be read", "Nothing to change here: it was not a "
        fix += "snapshot event Stripe sends to webhook endpoints."
    return cause, fix, why_hook if code in HOOK_LEVEL else "", field


_SIMPLE: dict[str, tuple[str, str]] = {
    "passkit_unavailable": ("PassKit was busy or down",
                            "Nothing to change: PassKit was busy; Replay it or let Zapier "
                            "retry."),
    "passkit_busy": ("many deliveries were queued for PassKit at once (the relay keeps to "
                     "PassKit's rate)",
                     "Nothing to change: Replay it or let Zapier retry; if it happens often, "
                     "ask whoever runs the relay about the PassKit rate limit."),
    "passkit_timeout": ("PassKit did not answer in time",
                        "Nothing to change: Replay it (a pass is never issued twice) or let "
                        "Zapier retry."),
    "rate_limited": ("too many deliveries arrived at once for this hook",
                     "Slow the zap down (Zapier: Delay After Queue; Make: sequential "
                     "processing), then Replay."),
    "in_progress": ("the same delivery was still running when it came again",
                    "Nothing to change: Zapier and Make retry and get the first answer."),
    "internal_error": ("the relay hit an unexpected problem",
                       "Replay it; if it fails again, give whoever runs the relay the "
                       "request ID under Technical details."),
    "client_gone": ("the sender hung up before everything arrived",
                    "Nothing to change: Zapier or Make will try again."),
    "passkit_auth": ("PassKit refused the relay's key",
                     "Whoever runs the relay must check its PassKit key, secret and region (the "
                     "PassKit page here shows the connection), then Replay."),
    "template_error": ("this hook's template is broken (nothing is wrong with what was sent)",
                       "Whoever runs the relay must fix the template (its log has the details), "
                       "then Replay."),
    "template_missing": ("this hook's template was removed", f"{_first_up(NEW_URL)}."),
    "revoked_token": ("this hook URL was revoked",
                      "Put the hook's replacement URL in the zap, or turn the zap off."),
    "invalid_token": ("the hook URL is incomplete or wrong",
                      "Copy the whole URL again from the hook's page into the zap's Webhooks "
                      "step (Make: the HTTP module's URL)."),
    "wrong_endpoint": ("a Stripe URL was used in a zap, or a hook URL in Stripe",
                       "Put a Stripe endpoint URL in Stripe's dashboard and a hook URL in "
                       "Zapier or Make (Hooks › New hook mints both)."),
    "invalid_signature": ("the event did not carry Stripe's signature for this endpoint",
                          "Whoever runs the relay must set this endpoint's signing secret "
                          "(whsec_…, in Stripe's dashboard), then resend the event from Stripe."),
    "not_configured": ("this feature is switched off on the relay",
                       "Whoever runs the relay must switch it on (for Stripe: set the signing "
                       "secret), then resend the event from Stripe's dashboard."),
    "invalid_body": ("what arrived could not be read as fields",
                     "In Zapier's Webhooks step set Payload Type to Form or JSON; in Make send "
                     "the HTTP module's body as a form or JSON object."),
    "unsupported_media_type": ("what arrived was neither a form nor JSON",
                               "In Zapier set Payload Type to Form or JSON; in Make choose a form "
                               "body, or Raw with Content type JSON."),
    "body_too_large": ("what arrived was too large",
                       "Send only the fields the pass needs from the zap (no files or long "
                       "texts)."),
    "body_timeout": ("what was sent arrived too slowly and was cut off",
                     "Nothing to change if it happened once; if it repeats, tell whoever runs "
                     "the relay."),
    "headers_too_large": ("the request's headers were too large",
                          "Remove the long custom header or cookie from the zap's Webhooks step "
                          "(Make: the HTTP module's headers)."),
    "method_not_allowed": ("the hook URL was opened (GET) instead of sent to (POST)",
                           "In Zapier use Webhooks › POST; in Make set the HTTP module's method "
                           "to POST. Replay sends this one as a POST."),
    "idempotency_key_reused": ("the zap sent an idempotency key it had used with other fields",
                               "Map the trigger record's id as idempotency_key, not a constant."),
    "mixed_currency": ("this customer paid in a second currency, and tiers from spend add up "
                       "one currency per customer",
                       "Charge this customer in the currency they paid in before, or set "
                       "their pass's tier in PassKit by hand."),
}  # fmt: skip
# A PassKit events URL (/passkit/…) fails in its own words: its secret is PassKit's, not Stripe's.
_PASSKIT_EVENTS: dict[str, tuple[str, str]] = {
    "invalid_signature": ("the event did not carry PassKit's signature for this PassKit events "
                          "URL",
                          "Whoever runs the relay must set PASSKIT_WEBHOOK_SECRET to the "
                          "webhook's signing secret (in PassKit: Integrations › Webhooks; it "
                          "changes when the webhook is edited); PassKit then sends again."),
    "not_configured": ("PassKit events are switched off on the relay",
                       "Whoever runs the relay must set PASSKIT_WEBHOOK_SECRET to the webhook's "
                       "signing secret from PassKit; PassKit then sends again."),
    "wrong_endpoint": ("a hook or Stripe URL was given to PassKit's webhook, or this PassKit "
                       "events URL to a zap",
                       "Put the PassKit events URL (…/passkit/…) in PassKit's webhook "
                       "settings, and a hook URL in Zapier or Make."),
}  # fmt: skip
# Sending these again as a POST runs them properly: their fields were read and logged.
_REPLAY_AS_POST = frozenset({"method_not_allowed"})


def failure_of(record: DeliveryRecord, choices: Choices | None = None) -> Failure | None:
    """The failure of `record` in words; None when it did not fail. `choices`: what the account
    has where an id was not found (the console's account cache), for the fix to list."""
    if record.outcome != "failed":
        return None
    code = record.error_code or ""
    cause, fix, why, field = _explain(record, quote=True, choices=choices)
    unquoted = _explain(record, quote=False)[0]
    logged = record.request is not None
    can_replay = logged and code in TRANSIENT | FIXED_ELSEWHERE | _REPLAY_AS_POST
    if can_replay:
        why = ""
    elif not why and not logged:
        why = "What arrived was not logged (or never fully arrived): nothing to send again."
    elif not why:
        why = "Sending the same fields again would fail the same way: change them first."
    can_edit, why_no_edit = _editable(record, code)
    return Failure(
        cause=cause,
        fix=fix,
        field=field,
        can_replay=can_replay,
        why_not=why,
        tip=_tip(record, code),
        can_edit=can_edit,
        why_no_edit=why_no_edit,
        cause_unquoted=unquoted,
    )


def _editable(record: DeliveryRecord, code: str) -> tuple[bool, str]:
    if record.source == "stripe":
        return False, "Stripe deliveries cannot be edited: Stripe's event is the source."
    if not isinstance(record.request, dict):
        return False, (
            "What arrived was not logged (payload logging is off, or it was refused before it "
            "was read), so there is nothing to edit."
        )
    if code in {"revoked_token", "template_missing", "hook_misconfigured", "wrong_endpoint"}:
        return False, "The hook itself is the problem: editing the fields cannot fix it."
    return True, ""


def _tip(record: DeliveryRecord, code: str) -> str:
    """The hint the sender got, where it speaks Zapier and Make (not the relay's set-up)."""
    hint: Any = record.error_hint
    if code not in {"invalid_field", "unsupported_media_type", "invalid_body"}:
        return ""
    if not isinstance(hint, str) or "--" in hint or "`" in hint or _PYTHONIC.search(hint):
        return ""
    return hint

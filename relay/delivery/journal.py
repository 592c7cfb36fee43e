"""The delivery log's side of a delivery: one redacted `DeliveryRecord` per answer (the store
seals its payloads and keeps who it was about as blind indexes: relay.store.personal).

Recorded before the answer is sent (group-committed, so cheaply), which is what makes the promise
hold that a delivery answered 2xx is never missing from the log, even after a kill -9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relay.delivery.pipeline import Trace
from relay.errors import RelayError, shorten
from relay.forms.fields import Fields
from relay.redact import redact_text
from relay.sealing import normalised
from relay.store import DeliveryRecord, Outcome, Source, new_delivery_id
from relay.store.personal import logged, people_in

FIELD_NAME_LIMIT = 64


def outcome_of(status: int, answer: Mapping[str, Any]) -> Outcome:
    if status >= 300 or not answer.get("ok"):
        return "failed"
    if answer.get("skipped"):
        return "skipped"
    if answer.get("ignored"):
        return "ignored"
    if answer.get("dry_run"):
        return "dry_run"
    if answer.get("duplicate"):
        return "duplicate"
    return "ok"


def fields_for_log(fields: Fields) -> dict[str, Any]:
    """The flat fields as plain JSON (lists stay lists), for the log's redacted request."""
    return {name: list(value) if isinstance(value, list) else str(value)
            for name, value in fields.items()}  # fmt: skip


def field_of(error: RelayError | None) -> str | None:
    """The field a failure names, for grouping failures by cause. A template's field names are
    short; a longer name came from the sender and may be anything, even data: not kept."""
    if error is None or not error.field or len(error.field) > FIELD_NAME_LIMIT:
        return None
    return redact_text(error.field)


def delivery_record(
    *,
    at: float,
    source: Source,
    hook_id: str | None,
    template: str,
    trace: Trace,
    status: int,
    answer: Mapping[str, Any],
    latency_ms: float,
    request_id: str,
    request: Any,
    log_payloads: bool,
    replay_of: str | None = None,
    hook_params: Mapping[str, str] | None = None,
    key: str | None = None,
) -> DeliveryRecord:
    """The log's record of one answered delivery. `key`: its idempotency key (a Stripe event's
    id), what a later success fixing a failure of it shares with it (see fix_key)."""
    error = answer.get("error")
    error_code = error.get("code") if isinstance(error, Mapping) else None
    # Never the sender's copy of the message: it may quote what they sent (see RelayError).
    message = trace.error.logged_message() if trace.error else answer.get("reason")
    outcome = outcome_of(status, answer)
    failure = trace.error if outcome == "failed" else None
    # Each value walked once: redacted, and who it is about found on the way (before
    # redaction, so a person is erasable also when payloads are not logged).
    request_logged, sent, sent_names = logged(request, store_payloads=log_payloads)
    asked_logged, asked, asked_names = logged(trace.passkit_request, store_payloads=log_payloads)
    answered = (
        {"status": trace.passkit_status, "json": trace.passkit_response}
        if trace.passkit_status is not None
        else None
    )
    answered_logged, told, _ = logged(answered, store_payloads=log_payloads, names=False)
    if answered is None and trace.passkit_response is not None:  # never so from the pipeline
        told = people_in(trace.passkit_response)
    return DeliveryRecord(
        id=new_delivery_id(at),  # here, not by the store: a dataclass replace() costs ~8 µs
        at=at,
        source=source,
        hook_id=hook_id,
        template=template,
        operation=trace.operation or str(answer.get("operation") or ""),
        outcome=outcome,
        status=status,
        latency_ms=round(latency_ms, 2),
        request_id=request_id,
        error_code=error_code if isinstance(error_code, str) else None,
        error_message=redact_text(message) if isinstance(message, str) else None,
        error_field=field_of(failure),
        error_hint=redact_text(shorten(failure.hint, 400)) if failure and failure.hint else None,
        replay_of=replay_of,
        hook_params=hook_params,
        request=request_logged,
        passkit_request=asked_logged,
        passkit_response=answered_logged,
        people=tuple(dict.fromkeys([*sent, *asked, *told])),
        names=tuple(dict.fromkeys([*sent_names, *asked_names])),
        fix_key=fix_key(key, sent),
    )


def fix_key(key: str | None, people: Sequence[str]) -> str | None:
    """What a later delivery on the same hook that fixes this one shares with it: the same
    idempotency key, or (sent without one) the same person (`people`: those in what was sent);
    the store keeps it blinded."""
    if key:
        return f"key {key}"
    ordered = sorted(normalised(p) for p in people)
    return f"person {ordered[0]}" if ordered else None

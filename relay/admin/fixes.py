"""A failed delivery explained for the operator: what went wrong and what to change, in words,
and whether sending it again as it is could turn out differently."""

from __future__ import annotations

from dataclasses import dataclass

from relay.store import DeliveryRecord

# Failures that may pass on a second try with the same fields: PassKit was busy, slow or away.
TRANSIENT = frozenset(
    {"passkit_unavailable", "passkit_timeout", "rate_limited", "internal_error", "client_gone"}
)


@dataclass(frozen=True)
class Failure:
    cause: str  # what went wrong, in words: "the email is missing"
    fix: str  # what to change, in words: "Map Email in the zap's Data rows."
    field: str | None  # the field it is about, when there is one
    can_replay: bool  # replaying the same fields could change the outcome
    why_not: str  # when it cannot: why a replay as it is would fail the same way


def failure_of(record: DeliveryRecord) -> Failure | None:
    """The failure of `record` in words; None when it did not fail."""
    if record.outcome != "failed":
        return None
    code = record.error_code or ""
    can_replay = code in TRANSIENT
    why_not = (
        ""
        if can_replay
        else "Sending the same fields again would fail the same way: change them first."
    )
    return Failure(
        cause=(record.error_message or "it failed").strip(),
        fix="",
        field=None,
        can_replay=can_replay,
        why_not=why_not,
    )

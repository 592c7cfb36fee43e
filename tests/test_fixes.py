"""relay.ui.fixes: every failure the relay can log is explained in words, with a fix, and
Replay is offered only where sending the same fields again could turn out differently."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

import relay.delivery.idempotency
import relay.stripe.events
import relay.web.endpoints
from relay.errors import RelayError
from relay.store import DeliveryRecord
from relay.ui.fixes import failure_of

FAILED = DeliveryRecord(
    at=0.0, source="hook", hook_id="hk_a", template="member-enrol", operation="members.enrol",
    outcome="failed", status=422, latency_ms=1.0, request_id="req_1", request={"email": "a@b.co"},
)  # fmt: skip
PYTHON = re.compile(r"Traceback|Error\b|Exception\b|line \d+|None\b|\{|\}")


def every_code() -> set[str]:
    assert (
        relay.web.endpoints and relay.delivery.idempotency and relay.stripe.events
    )  # their errors count
    found, todo = set(), [RelayError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("code", sorted(every_code()))
def test_every_error_code_has_a_cause_and_a_fix_in_words(code: str) -> None:
    failure = failure_of(replace(FAILED, error_code=code, error_message="KeyError: 'x' line 3"))
    assert failure is not None
    assert failure.cause != "it failed" and failure.fix, code
    for words in (failure.cause, failure.fix, failure.why_not, failure.tip):
        assert not PYTHON.search(words), (code, words)
    assert failure.can_replay or failure.why_not


def test_a_value_that_is_not_a_number() -> None:
    record = replace(FAILED, error_code="invalid_field", error_field="points",
                     error_message="points: must be a whole number (got: [redacted]).",
                     request={"points": "lots"})  # fmt: skip
    failure = failure_of(record)
    assert failure is not None
    assert failure.cause == "points “lots” is not a whole number"
    assert failure.fix == "Send a whole number in Points."
    assert failure.field == "points" and failure.can_edit
    assert not failure.can_replay and "“lots”" in failure.why_not
    assert "lots" not in failure.cause_unquoted  # what was sent stays out of alerts


def test_a_missing_field_says_where_to_map_it() -> None:
    record = replace(
        FAILED,
        error_code="missing_field",
        error_field="email",
        error_message="email is required but was not sent (got: [redacted]).",
    )
    failure = failure_of(record)
    assert failure is not None and failure.cause == "the email is missing"
    assert failure.fix.startswith("Map Email in the zap's Data rows")
    assert not failure.can_replay


def test_passkit_busy_can_be_replayed_unless_nothing_was_logged() -> None:
    busy = replace(FAILED, status=503, error_code="passkit_unavailable")
    failure = failure_of(busy)
    assert failure is not None and failure.can_replay and failure.fix.startswith("Nothing to")
    unlogged = failure_of(replace(busy, request=None))
    assert unlogged is not None and not unlogged.can_replay and "not logged" in unlogged.why_not
    assert not unlogged.can_edit and "not logged" in unlogged.why_no_edit


def test_passkit_words_are_quoted_and_stripe_is_not_editable() -> None:
    record = replace(
        FAILED,
        error_code="passkit_rejected",
        source="stripe",
        passkit_response={"status": 400, "json": {"message": "tier gold missing"}},
    )
    failure = failure_of(record)
    assert failure is not None and failure.cause == "PassKit refused it: “tier gold missing”"
    assert failure.can_replay and not failure.can_edit and "Stripe" in failure.why_no_edit


def test_a_success_is_no_failure() -> None:
    assert failure_of(replace(FAILED, outcome="ok", status=200)) is None

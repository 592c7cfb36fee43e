"""Replaying a logged delivery through the same pipeline as a live one.

A hook delivery is re-run from its logged (redacted) fields with the hook's template and params
from the registry; a Stripe delivery from its logged event, deduplicated by event id as always,
so an event processed meanwhile is answered as a duplicate. Creates keep their protection, so a
replay never issues a second pass. Edit and resend is a replay of a hook delivery with the
operator's corrected fields. The new delivery is logged with `replay_of` pointing back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from relay.access.tokens import Hook
from relay.delivery.pipeline import Trace
from relay.errors import RelayError
from relay.forms.fields import FieldList, Fields, FieldValue
from relay.store import DeliveryRecord
from relay.stripe import events as stripe_events
from relay.web.endpoints import Endpoints, new_request_id

log = logging.getLogger("relay")


class CannotReplay(Exception):
    """Why a delivery cannot be replayed, said for the operator."""


def fields_from_log(logged: dict[str, Any]) -> Fields:
    fields: Fields = {}
    for name, value in logged.items():
        if isinstance(value, list):
            fields[name] = FieldList([FieldValue(str(v), name) for v in value], name)
        elif value is not None:
            fields[name] = FieldValue(str(value), name)
    return fields


async def replay(
    endpoints: Endpoints, record: DeliveryRecord, edited: dict[str, Any] | None = None
) -> str:
    """Run `record` again (with its fields replaced by `edited`, for Edit and resend); returns
    the new delivery's id. CannotReplay says why not."""
    if edited is not None and record.source == "stripe":
        raise CannotReplay("A Stripe delivery cannot be edited: Stripe's event is the source.")
    if record.request is None:
        raise CannotReplay(
            "What arrived was not logged (payload logging is off, or it was refused before it "
            "was read), so there is nothing to send again."
        )
    store = await endpoints.s.store.get()
    registered = await store.get_hook(record.hook_id) if record.hook_id else None
    if registered is None:
        raise CannotReplay(
            "Its hook is not in this relay's list of hooks (made on another relay?)."
        )
    if registered.revoked:
        raise CannotReplay("Its hook has been revoked: its URL no longer works.")
    hook = Hook(registered.id, registered.template, registered.params)
    request_id, trace, started = new_request_id(), Trace(), time.perf_counter()
    template = record.template
    status, answer = 200, dict[str, Any]()
    try:
        if record.source == "stripe":
            event = record.request
            template = stripe_events.template_name(event)
            status, answer = await endpoints.handle_event(hook, event, template, request_id, trace)
        else:
            fields = fields_from_log(record.request if edited is None else edited)
            answer = await endpoints.run_hook(
                hook, fields, list(fields), request_id=request_id, trace=trace
            )
    except RelayError as exc:
        status, answer = trace.failed(exc)
    new_id = await endpoints.record(
        record.source, hook, template, trace=trace, status=status, answer=answer,
        started=started, request_id=request_id, replay_of=record.id,
        request=record.request if edited is None else edited,
    )  # fmt: skip
    log.info("%s replay of %s as %s: status %d", request_id, record.id, new_id, status)
    return new_id

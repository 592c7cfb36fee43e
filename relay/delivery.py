"""One delivery, top to bottom: hook + flat fields → rendered request → PassKit → answer.

Shared by the hook endpoint, Stripe and replays, and free of Starlette: it takes a verified hook
and parsed fields and returns the flat JSON answer a next Zapier/Make step can map, or raises a
RelayError that the app renders as the friendly error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.errors import PassKitNotFound, RelayError, TemplateMissing
from relay.fields import Fields
from relay.idempotency import ATTEMPTED, CREATE_SCOPE, OnceGuard, create_key
from relay.operations import CATALOG, Operation, PassKitRequest, build_request, dig
from relay.passkit import PassKitAnswer, PassKitClient, passkit_message, raise_for_answer
from relay.templating import (
    RequestTemplate,
    SkipDelivery,
    TemplateLibrary,
    check_fields,
    render,
    resolve_params,
)
from relay.tokens import Hook


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sent:
    """The request PassKit answered (the update, after an upsert's conflict) and its answer."""

    request: PassKitRequest
    answer: PassKitAnswer
    created: bool
    duplicate: bool = False  # a replayed create: PassKit already had it from us


@dataclass
class Trace:
    """What one delivery did, filled in on the way for its delivery-log record."""

    operation: str = ""
    passkit_request: dict[str, Any] | None = None
    passkit_status: int | None = None
    passkit_response: Any = None
    # The error behind the answer (a failure, or a not-found that was ignored): the log stores
    # its masked message, never the sender's copy.
    error: RelayError | None = None

    def failed(self, error: RelayError) -> tuple[int, dict[str, Any]]:
        """The status and answer `error` gives the sender, remembered for the log."""
        self.error = error
        return error.status, error.answer()


@dataclass
class Relay:
    """What a delivery needs, built once per app. Without `guard` (no store: `relay render`,
    unit tests) creates are not protected against replays."""

    library: TemplateLibrary
    client: PassKitClient
    clock: Callable[[], datetime] = utc_now
    guard: OnceGuard | None = None

    def template_for(self, hook: Hook) -> RequestTemplate:
        template = self.library.get(hook.template)
        if template is None:
            raise TemplateMissing(
                f"This hook's template ({hook.template}) is gone from this relay."
            )
        return template

    def prepare(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        extra: Mapping[str, Any] | None = None,
        *,
        updating: bool = False,
    ) -> PassKitRequest:
        """Check, render and validate: everything short of sending. Raises on any problem."""
        template = self.template_for(hook)
        check_fields(template, fields, received)
        params = resolve_params(template, hook.params)
        body = render(template, fields, params, now=self.clock(), extra=extra, updating=updating)
        operation = template.operation
        if updating and operation.on_conflict:
            operation = CATALOG[operation.on_conflict]
        return build_request(operation, body)

    async def send(
        self,
        request: PassKitRequest,
        update: Callable[[], PassKitRequest] | None = None,
        trace: Trace | None = None,
    ) -> Sent:
        """Send; when PassKit says the record exists and the operation upserts, send the update
        built by `update` instead. Creates go through create protection (see `idempotency`)."""
        operation = request.operation
        key = create_key(request) if operation.creates and self.guard else None
        if key is not None:
            return await self._send_create(request, key, trace)
        answer = await self._call(request, trace)
        if operation.on_conflict and update and _is_conflict(answer):
            request = update()
            answer = await self._call(request, trace)
            raise_for_answer(answer, request.operation)
            return Sent(request, answer, created=False)
        raise_for_answer(answer, operation)
        return Sent(request, answer, created=operation.creates or operation.on_conflict is not None)

    async def _send_create(self, request: PassKitRequest, key: str, trace: Trace | None) -> Sent:
        assert self.guard is not None
        claim = await self.guard.claim(CREATE_SCOPE, key)
        try:
            answer = await self._call(request, trace)
        except BaseException:
            # No answer (timed out, unreachable, the sender hung up): PassKit may have made it.
            if claim.won:
                await self.guard.remember_attempt(claim)
            raise
        if claim.done and _is_conflict(answer):
            if claim.status == ATTEMPTED:
                # An earlier try of this create got no answer but PassKit carried it out: the
                # record is ours. Answer with it, as a replay.
                found = await self._find_created(request, trace)
                if found is not None:
                    await self.guard.remember_create(claim, found.json)
                    return Sent(request, found, created=False, duplicate=True)
            else:
                # A replay of a create this relay already made: answer as the first time did.
                stored = PassKitAnswer(200, json.loads(claim.body or "null"), {}, answer.attempts)
                return Sent(request, stored, created=False, duplicate=True)
        if _is_conflict(answer) and answer.attempts > 1:
            # An earlier attempt's answer was lost (connection dropped) but PassKit had carried
            # it out: the retry's "already exists" is our own create. Answer with it.
            answer = await self._find_created(request, trace) or answer
        if answer.ok:
            await self.guard.remember_create(claim, answer.json)
        elif claim.won:
            await self.guard.release(claim)
        raise_for_answer(answer, request.operation)
        return Sent(request, answer, created=True)

    async def _find_created(
        self, request: PassKitRequest, trace: Trace | None
    ) -> PassKitAnswer | None:
        operation = request.operation
        if operation.find_with is None or request.json is None:
            return None
        finder = CATALOG[operation.find_with]
        found_at = ((name, dig(request.json, tuple(field.split(".")))) for field, name in
                    operation.find_keys)  # fmt: skip
        keys = {name: value for name, value in found_at if value is not None}
        found = await self._call(build_request(finder, keys), trace)
        if not found.ok or not isinstance(found.json, dict) or "id" not in found.json:
            return None
        return PassKitAnswer(200, {"id": found.json["id"]}, found.headers, found.attempts)

    async def _call(self, request: PassKitRequest, trace: Trace | None) -> PassKitAnswer:
        if trace is not None:
            trace.passkit_request = request.describe()
        answer = await self.client.send(request)
        if trace is not None:
            trace.passkit_status = answer.status
            trace.passkit_response = answer.json
        return answer

    def success(self, sent: Sent, *, request_id: str, operation: Operation) -> dict[str, Any]:
        request, answer = sent.request, sent.answer
        pass_id = dig(answer.json, request.operation.id_in_answer) or dig(
            request.json, request.operation.id_in_request
        )
        external_id = dig(request.json, request.operation.external_id_in_request)
        result: dict[str, Any] = {
            "ok": True,
            "operation": operation.name,
            "id": pass_id if isinstance(pass_id, str) else None,
            "external_id": external_id if isinstance(external_id, str) else None,
            "pass_url": None,
            "duplicate": sent.duplicate,
            "dry_run": False,
            "request_id": request_id,
        }
        if operation.on_conflict:
            result["created"] = sent.created
        if isinstance(pass_id, str) and operation.kind and not operation.pass_gone:
            result["pass_url"] = self.client.pass_url(pass_id)
        result["result"] = answer.json
        return result

    async def try_out(
        self, hook: Hook, fields: Fields, received: list[str], *, request_id: str
    ) -> dict[str, Any]:
        """A dry run whose problems are answers too (hook page and admin test forms)."""
        try:
            return await self.deliver(hook, fields, received, request_id=request_id, dry_run=True)
        except RelayError as exc:
            return exc.answer()

    async def deliver(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        *,
        request_id: str,
        dry_run: bool = False,
        extra: Mapping[str, Any] | None = None,
        trace: Trace | None = None,
    ) -> dict[str, Any]:
        try:
            request = self.prepare(hook, fields, received, extra)
        except SkipDelivery as skip:
            return {"ok": True, "skipped": True, "reason": skip.reason, "request_id": request_id}
        operation = request.operation
        if trace is not None:
            trace.operation = operation.name
        if dry_run:
            return {
                "ok": True,
                "operation": operation.name,
                "dry_run": True,
                "request_id": request_id,
                "request": request.describe(),
            }
        try:
            sent = await self.send(
                request, lambda: self.prepare(hook, fields, received, extra, updating=True), trace
            )
        except PassKitNotFound as missing:
            if self.template_for(hook).if_missing != "ignore":
                raise
            if trace is not None:
                trace.error = missing  # the log's copy of the reason, PassKit's words masked
            reason = f"nothing to do: {missing.message}"
            return {"ok": True, "ignored": True, "reason": reason, "request_id": request_id}
        return self.success(sent, request_id=request_id, operation=operation)


def _is_conflict(answer: PassKitAnswer) -> bool:
    if answer.status == 409:
        return True
    if answer.status == 400:
        return "already exist" in passkit_message(answer.json).lower()
    return False

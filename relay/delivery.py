"""One delivery, top to bottom: hook + flat fields → rendered request → PassKit → answer.

Shared by the hook endpoint, Stripe and replays, and free of Starlette: it takes a verified hook
and parsed fields and returns the flat JSON answer a next Zapier/Make step can map, or raises a
RelayError that the app renders as the friendly error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.errors import TemplateProblem
from relay.fields import Fields
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


@dataclass
class Relay:
    """What a delivery needs, built once per app."""

    library: TemplateLibrary
    client: PassKitClient
    clock: Callable[[], datetime] = utc_now

    def template_for(self, hook: Hook) -> RequestTemplate:
        template = self.library.get(hook.template)
        if template is None:
            raise TemplateProblem(
                f"Template {hook.template} does not exist on this relay any more.",
                hint="The operator removed or renamed this hook's template; mint a new URL.",
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
    ) -> tuple[PassKitRequest, PassKitAnswer, bool]:
        """Send; when PassKit says the record exists and the operation upserts, send the update
        built by `update` instead. Returns the request answered, the answer, and whether it
        created something."""
        operation = request.operation
        answer = await self.client.send(request)
        if operation.on_conflict and update and _is_conflict(answer):
            request = update()
            answer = await self.client.send(request)
            raise_for_answer(answer, request.operation.name)
            return request, answer, False
        raise_for_answer(answer, operation.name)
        return request, answer, operation.creates or operation.on_conflict is not None

    def success(
        self,
        request: PassKitRequest,
        answer: PassKitAnswer,
        *,
        created: bool,
        request_id: str,
        operation: Operation,
    ) -> dict[str, Any]:
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
            "duplicate": False,
            "dry_run": False,
            "request_id": request_id,
        }
        if operation.on_conflict:
            result["created"] = created
        if isinstance(pass_id, str) and operation.kind and not operation.pass_gone:
            result["pass_url"] = self.client.pass_url(pass_id)
        result["result"] = answer.json
        return result

    async def deliver(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        *,
        request_id: str,
        dry_run: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            request = self.prepare(hook, fields, received, extra)
        except SkipDelivery as skip:
            return {"ok": True, "skipped": True, "reason": skip.reason, "request_id": request_id}
        operation = request.operation
        if dry_run:
            return {
                "ok": True,
                "operation": operation.name,
                "dry_run": True,
                "request_id": request_id,
                "request": request.describe(),
            }
        sent, answer, created = await self.send(
            request, lambda: self.prepare(hook, fields, received, extra, updating=True)
        )
        return self.success(
            sent, answer, created=created, request_id=request_id, operation=operation
        )


def _is_conflict(answer: PassKitAnswer) -> bool:
    if answer.status == 409:
        return True
    if answer.status == 400:
        return "already exist" in passkit_message(answer.json).lower()
    return False

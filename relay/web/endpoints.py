"""The delivery endpoints: hook URLs (`/hooks/…`) and Stripe (`/stripe/…`).

Each request walks the path stage by stage: token → hook (`tokens`, `revocations`) → flat fields
(`payloads`) or a verified event (`stripe_events`) → once per key (`idempotency`) → rendered,
validated and sent (`delivery`) → answer, recorded in the delivery log (`journal`) before it is
returned. Errors are raised as RelayError and rendered by the app's one handler.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from relay.access.tokens import Hook
from relay.delivery.idempotency import KeyReused, fields_digest
from relay.delivery.journal import delivery_record, fields_for_log
from relay.delivery.pipeline import Trace
from relay.delivery.services import Services
from relay.delivery.templating import SkipDelivery
from relay.errors import (
    BodyTooLarge,
    ClientGone,
    InternalError,
    InvalidBody,
    InvalidToken,
    NotConfigured,
    RelayError,
    TemplateProblem,
    WrongEndpoint,
    quote_value,
)
from relay.forms.fields import Fields
from relay.forms.payloads import RESERVED, is_yes, normalise_key, parse_payload
from relay.hooks.public_page import describe, hook_page, wants_html
from relay.ids import unique_hex
from relay.passkit.operations import PassKitRequest, dig
from relay.store import Source
from relay.stripe import events as stripe_events
from relay.stripe.spend import SpendTiers
from relay.web.answers import JSONAnswer
from relay.web.checkout import record_checkout

MAX_KEY = 255  # an idempotency key is a record's id, not a record
# Query fields a GET of a hook URL may carry and still be a look at the hook, not a delivery:
# the relay's own switches and what link trackers append.
HARMLESS_QUERY = {*RESERVED, "format", "ref", "fbclid", "gclid", "mc_cid", "mc_eid"}


class MethodNotAllowed(RelayError):
    status = 405
    code = "method_not_allowed"
    default_hint = (
        "In Zapier pick Webhooks by Zapier › POST (not GET); in Make, set the HTTP module's "
        "method to POST. GET only shows what the hook does."
    )


def delivery_by_get(request: Request) -> MethodNotAllowed | None:
    """A GET (or HEAD) carrying fields: Zapier's GET action picked by mistake, which would
    show the hook's description (a green test) and issue nothing."""
    names = [normalise_key(name) for name in request.query_params]
    fields = [n for n in names if n not in HARMLESS_QUERY and not n.startswith("utm_")]
    if not fields:
        return None
    return MethodNotAllowed(
        f"A {request.method} with fields ({len(fields)}) delivers nothing: hook URLs take "
        "their fields in a POST (or PUT).",
    )


def new_request_id() -> str:
    return "req_" + unique_hex(16)


def request_id_of(request: Request) -> str:
    rid: str = request.scope.setdefault("state", {}).setdefault("request_id", new_request_id())
    return rid


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone(f"The sender hung up after {size:,} bytes of the body.") from None
    return b"".join(chunks)


async def read_form(request: Request, limit: int, *, fields: int, files: int = 0) -> FormData:
    """The request's form, read only up to `limit` bytes and parsed only up to `fields` fields
    and `files` files: BodyTooLarge (413) beyond, InvalidBody (400) when it does not parse. A
    form already read is returned as it was."""
    if not hasattr(request, "_body"):
        request._body = await read_body(request, limit)  # the parser then reads this copy
    try:
        return await request.form(max_files=files, max_fields=fields, max_part_size=limit)
    except (HTTPException, MultiPartException) as exc:  # too many fields, or no form at all
        why = str(exc.detail if isinstance(exc, HTTPException) else exc.message)
        if why.startswith("Too many"):
            raise BodyTooLarge(f"The form has more than it may: {why}") from None
        raise InvalidBody(f"The form could not be read: {why}") from None


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"The body is larger than the relay accepts ({limit // 1024} KiB).")


def _token_from_headers(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    token = request.headers.get("x-relay-token", "").strip()
    if not token:
        raise InvalidToken(
            "No hook token: POST /hooks needs it in an Authorization: Bearer header "
            "or X-Relay-Token.",
            hint="Paste the whole hook URL (…/hooks/<token>) into Zapier or Make instead.",
        )
    return token


def _refuse_stripe_endpoint(hook: Hook) -> None:
    if hook.template == stripe_events.PARAMS_TEMPLATE:
        raise WrongEndpoint(
            "This URL is a Stripe endpoint: it takes Stripe's signed events, not Zapier or Make.",
            hint="Paste it into Stripe (Developers › Webhooks); for Zapier or Make, mint a hook "
            "URL for a template such as member-upsert.",
        )


@dataclass
class Logging:
    """What the delivery log will say of a request, filled in as it goes (Endpoints.recording):
    a failure until an answer is set."""

    template: str
    trace: Trace = field(default_factory=Trace)
    status: int = 500
    answer: dict[str, Any] = field(default_factory=dict)
    logged: Any = None  # what arrived, as the log keeps it
    dry_run: bool = False
    key: str | None = None  # its idempotency key (a Stripe event's id)


class Recording:
    """`async with endpoints.recording(…) as entry:` (see there), as a class: an async
    generator's context manager costs ~2 µs more a delivery."""

    __slots__ = ("endpoints", "entry", "hook", "request", "request_id", "source", "started")

    def __init__(
        self,
        endpoints: Endpoints,
        source: Source,
        hook: Hook,
        request: Request,
        request_id: str,
        started: float,
    ) -> None:
        self.endpoints, self.source, self.hook = endpoints, source, hook
        self.request, self.request_id, self.started = request, request_id, started
        self.entry = Logging(hook.template)
        self.entry.trace.deferred = []  # the stored answers go with the log entry, in `record`

    async def __aenter__(self) -> Logging:
        return self.entry

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        traceback: object) -> None:  # fmt: skip
        entry = self.entry
        try:
            if isinstance(exc, RelayError):
                entry.status, entry.answer = entry.trace.failed(exc)
            elif isinstance(exc, Exception):
                entry.status, entry.answer = entry.trace.failed(InternalError())
        finally:  # logged however it ended; the failure, if any, goes on as raised
            await self.endpoints.record(
                self.source, self.hook, entry.template, trace=entry.trace, status=entry.status,
                answer=entry.answer, started=self.started, request_id=self.request_id,
                request=entry.logged, note=self.request.scope.get("state"),
                dry_run=entry.dry_run, key=entry.key,
            )  # fmt: skip


class Endpoints:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.stripe_secrets = [s.reveal() for s in services.settings.stripe_webhook_secrets]
        self.spend = SpendTiers(services.store, services.sealer.blind, services.timestamp)

    def recording(
        self, source: Source, hook: Hook, request: Request, request_id: str, started: float
    ) -> Recording:
        """Log the delivery the block runs, however it ends: its answer, or the failure it
        raised (which goes on to the error handlers, as raised)."""
        return Recording(self, source, hook, request, request_id, started)

    async def record(
        self,
        source: Source,
        hook: Hook,
        template: str,
        *,
        trace: Trace,
        status: int,
        answer: dict[str, Any],
        started: float,
        request_id: str,
        request: Any,
        replay_of: str | None = None,
        note: dict[str, Any] | None = None,
        dry_run: bool = False,
        key: str | None = None,
    ) -> str:
        """Log one delivery, before it is answered: an answered delivery is never missing.
        Then tell the alerts (a queue put at most; RELAY_ALERT_URL is told after the answer)."""
        entry = delivery_record(
            at=self.s.timestamp(),
            source=source,
            hook_id=hook.id,
            template=template,
            trace=trace,
            status=status,
            answer=answer,
            latency_ms=(time.perf_counter() - started) * 1000,
            request_id=request_id,
            request=request,
            log_payloads=self.s.settings.log_payloads,
            replay_of=replay_of,
            hook_params=hook.params,
            key=key,
        )
        store = await self.s.store.get()
        completions = trace.deferred or ()
        trace.deferred = None
        try:
            delivery_id = await store.record_delivery(entry, completions=completions)
        except Exception:
            # The log could not take them: the answers are stored alone, as before deferring,
            # so a retry is answered from them rather than waiting out a pending claim. (A
            # cancelled caller needs none of this: its batch is committed all the same.)
            for done in completions:
                with contextlib.suppress(Exception):
                    await store.complete(done.claim, done.status, done.body, people=done.people)
            raise
        self.s.alerts.observe(entry, dry_run=dry_run)
        if note is not None:  # the access log's line for this request says what became of it
            note["log_note"] = f"hook={hook.id} template={template} outcome={entry.outcome}"
        return delivery_id

    async def run_hook(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        *,
        request_id: str,
        trace: Trace,
        dry_run: bool = False,
        key: str | None = None,
    ) -> dict[str, Any]:
        """One hook delivery after its body is read: once per idempotency key, if given."""

        ahead: tuple[PassKitRequest, tuple[str, str]] | None = None

        async def run() -> dict[str, Any]:
            return await self.s.relay.deliver(hook, fields, received, request_id=request_id,
                                              dry_run=dry_run, trace=trace,
                                              prepared=ahead[0] if ahead else None)  # fmt: skip

        if not key or dry_run or self.s.relay.template_for(hook).operation.method == "GET":
            return await run()  # a read bills nothing and a replay should see fresh data
        # A create: its create key is claimed with this key, in one trip to the store.
        ahead = self.s.relay.create_ahead(hook, fields, received)
        answer = await self.s.guard.once(hook.id, key, run, digest=fields_digest(fields),
                                         defer=trace.deferred,
                                         ahead=ahead[1] if ahead else None)  # fmt: skip
        answer["request_id"] = request_id  # a replay still answers as this request
        if answer.get("duplicate") and "external_id" not in answer:
            answer["external_id"] = self.external_id(hook, fields, received)
        return answer

    def external_id(self, hook: Hook, fields: Fields, received: list[str]) -> str | None:
        """The external id these fields are sent under: a stored answer is kept without it."""
        try:
            request = self.s.relay.prepare(hook, fields, received)
        except (RelayError, SkipDelivery):
            return None
        found = dig(request.json, request.operation.external_id_in_request)
        return found if isinstance(found, str) else None

    async def deliver(self, request: Request, token: str) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        hook = self.s.signer.verify(token)
        async with self.recording("hook", hook, request, request_id, started) as entry:
            # Inside, so the log shows a revoked hook that is still being called.
            await self.s.revocations.check(hook.id)
            _refuse_stripe_endpoint(hook)
            self.s.rate_limit.take(hook.id)
            body = await read_body(request, self.s.settings.body_limit)
            payload = parse_payload(body, request.headers.get("content-type"))
            entry.logged = fields_for_log(payload.fields)
            entry.dry_run = (
                payload.dry_run
                # Most hook URLs carry no query: skip parsing an empty one (~4 µs).
                or (
                    bool(request.scope["query_string"])
                    and is_yes(request.query_params.get("dry_run"))
                )
                or is_yes(request.headers.get("x-relay-dry-run"))
            )
            key = request.headers.get("idempotency-key", "").strip() or payload.idempotency_key
            if key and len(key) > MAX_KEY:
                raise InvalidBody(
                    f"The idempotency key is {len(key):,} characters long; at most {MAX_KEY}.",
                    hint="Map the trigger record's id as idempotency_key, not a whole record.",
                )
            order = None
            if not key:  # an explicit idempotency_key wins over the hook's key_field
                order = self.s.relay.order_key(hook, payload.fields)
                key = f"{order[0]}={order[1]}" if order else None
            entry.key = key or None
            try:
                entry.answer = await self.run_hook(hook, payload.fields, payload.received,
                                                   request_id=request_id, trace=entry.trace,
                                                   dry_run=entry.dry_run, key=key)  # fmt: skip
            except KeyReused:
                if order is None:
                    raise
                raise KeyReused(
                    f"{order[0]} {quote_value(order[1])} was already counted, with other "
                    "fields; nothing was sent to PassKit.",
                    field=order[0],
                    hint=f"This hook counts each {order[0]} once: map {order[0]} to the id of "
                    "one order, purchase or visit, not a value many share.",
                    private=[quote_value(order[1])],
                ) from None
            entry.status = 200
        return JSONAnswer(entry.answer)

    async def stripe_delivery(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        hook = self.s.signer.verify(request.path_params["token"])
        async with self.recording("stripe", hook, request, request_id, started) as entry:
            entry.template = stripe_events.PARAMS_TEMPLATE  # until the event names its own
            await self.s.revocations.check(hook.id)
            if hook.template != stripe_events.PARAMS_TEMPLATE:
                raise WrongEndpoint(
                    "This is a hook URL for Zapier or Make, not a Stripe endpoint.",
                    hint="In Stripe, add the URL that `relay url stripe` (or the console's Stripe "
                    "hook) mints; it starts with /stripe/.",
                )
            if not self.stripe_secrets:
                raise NotConfigured(
                    "Stripe events are off: STRIPE_WEBHOOK_SECRET is not set on this relay.",
                    hint="Set STRIPE_WEBHOOK_SECRET to the endpoint's signing secret (whsec_…).",
                )
            body = await read_body(request, self.s.settings.body_limit)
            signature = request.headers.get("stripe-signature")
            event = stripe_events.verify(body, signature, self.stripe_secrets)
            entry.logged = stripe_events.summary(event)
            entry.key = str(event.get("id") or "") or None
            entry.template = stripe_events.template_name(event)
            entry.status, entry.answer = await self.handle_event(
                hook, event, entry.template, request_id, entry.trace
            )
        return JSONAnswer(entry.answer, status_code=entry.status)

    async def handle_event(
        self, hook: Hook, event: dict[str, Any], template: str, request_id: str, trace: Trace
    ) -> tuple[int, dict[str, Any]]:
        """(status, answer) for a verified event. Only a processed event is marked as seen; a
        transient failure is a 5xx so Stripe retries, a permanent one a 200 `ok: false`
        (Stripe cannot fix it; the log keeps it for a replay)."""
        if self.s.library.get(template) is None:
            reason = f"no template {template} on this relay"
            return 200, {"ok": True, "ignored": True, "reason": reason, "request_id": request_id}

        async def run() -> dict[str, Any]:
            extra = stripe_events.context(event)
            movement = await self.spend.count(hook.params, event)  # tier_for_spend's ledger
            extra["spend"] = movement.context() if movement else None
            answer = await self.s.relay.deliver(
                Hook(hook.id, template, hook.params),
                {},
                [],
                request_id=request_id,
                extra=extra,
                trace=trace,
            )
            if movement is not None:
                await self.spend.settled(movement, answer)
            return answer

        try:
            answer = await self.s.guard.once(
                f"stripe:{hook.id}", str(event["id"]), run, defer=trace.deferred
            )
        except RelayError as exc:
            # Stripe retries a 5xx for days: only a failure a retry can cure gets one. A template
            # that cannot read this event will not read it tomorrow (the log keeps it to replay).
            if exc.status >= 500 and not isinstance(exc, TemplateProblem):
                raise
            trace.failed(exc)
            return 200, exc.answer(request_id)
        answer["request_id"] = request_id
        await record_checkout(self.s, hook, event, answer)  # the success page's pass
        return 200, answer

    async def hook_by_path(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method in ("GET", "HEAD"):  # a link checker's HEAD never delivers
            if (refused := delivery_by_get(request)) is not None:
                return await self.refuse_get(request, token, refused)
            return await self.describe_hook(request, token)
        return await self.deliver(request, token)

    async def hook_to_use(self, token: str) -> Hook:
        """The hook `token` names, unless it is revoked or a Stripe endpoint (raised as such):
        what a look at a hook, its test form and a refused GET start from."""
        hook = self.s.signer.verify(token)
        await self.s.revocations.check(hook.id)
        _refuse_stripe_endpoint(hook)
        return hook

    async def refuse_get(self, request: Request, token: str, refused: MethodNotAllowed) -> Response:
        """405 for a GET with fields, logged as a failed delivery (the operator sees a zap
        calling with GET); a wrong, revoked or Stripe URL is still told as such first."""
        started = time.perf_counter()
        hook = await self.hook_to_use(token)
        trace = Trace()
        status, answer = trace.failed(refused)
        rid = request_id_of(request)
        await self.record("hook", hook, hook.template, trace=trace, status=status, answer=answer,
                          started=started, request_id=rid, request=None,
                          note=request.scope.get("state"))  # fmt: skip
        return JSONResponse(refused.answer(rid), status_code=status, headers={"Allow": "POST, PUT"})

    async def hook_by_header(self, request: Request) -> Response:
        return await self.deliver(request, _token_from_headers(request))

    async def describe_hook(self, request: Request, token: str) -> Response:
        hook = await self.hook_to_use(token)
        template = self.s.relay.template_for(hook)
        if wants_html(request):
            return hook_page(request, hook, template, account=await self.s.accounts.get())
        description = describe(hook, template) | {"request_id": request_id_of(request)}
        return JSONResponse(description)

    async def try_hook(self, request: Request) -> Response:
        """The hook page's test form: a dry run shown on the page (nothing is sent)."""
        token = request.path_params["token"]
        hook = await self.hook_to_use(token)
        template = self.s.relay.template_for(hook)
        rid = request_id_of(request)
        body = await read_body(request, self.s.settings.body_limit)
        try:
            payload = parse_payload(body, request.headers.get("content-type"))
        except RelayError as exc:  # shown on the page, like any other problem with the test
            return hook_page(request, hook, template, tried=exc.answer(rid),
                             account=self.s.accounts.last())  # fmt: skip
        result = await self.s.relay.try_out(hook, payload.fields, payload.received, request_id=rid)
        return hook_page(request, hook, template, tried=result, sent=payload.fields,
                         account=await self.s.accounts.get())  # fmt: skip

"""The ASGI app: `create_app(settings)` wires routes, error rendering and the access log.

Only this module touches Starlette. Every answer is JSON with a `request_id`; every failure uses
the one error shape from SPEC "Answers" and is never a 200. Unexpected exceptions still reach
the server-error middleware and the log (with a JSON 500 for the caller).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay import housekeeping, stripe_events
from relay.delivery import Relay, Trace, utc_now
from relay.errors import BodyTooLarge, InvalidToken, NotConfigured, RelayError
from relay.idempotency import OnceGuard
from relay.journal import delivery_record, fields_for_log
from relay.passkit import PassKitClient
from relay.payloads import parse_payload
from relay.revocations import RevocationCache
from relay.settings import ConfigError, Settings, load_settings
from relay.store import DAY, Source, Store
from relay.store.handle import StoreHandle
from relay.templating import TemplateLibrary
from relay.tokens import Hook, HookSigner, redact_token

log = logging.getLogger("relay")
_TRUE = {"1", "true", "yes", "on", "y"}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


def request_id_of(request: Request) -> str:
    rid: str = request.scope.setdefault("state", {}).setdefault("request_id", new_request_id())
    return rid


def error_response(exc: RelayError, request_id: str) -> JSONResponse:
    headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
    body = {"ok": False, "request_id": request_id, "error": exc.as_dict()}
    return JSONResponse(body, status_code=exc.status, headers=headers)


class AccessLog:
    """Request id on every request and answer; one log line per request with the hook token
    cut short, because a full token in a log is a working credential."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            parts = scope["path"].split("/")
            if len(parts) > 2 and parts[1] in ("hooks", "stripe"):
                parts[2] = redact_token(parts[2])
            log.info(
                "%s %s %s %d %.1fms",
                request_id,
                scope["method"],
                "/".join(parts),
                status,
                (time.perf_counter() - started) * 1000,
            )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length", "")
    too_large = BodyTooLarge(f"The body is larger than the relay accepts ({limit // 1024} KiB).")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


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


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    library: TemplateLibrary | None = None,
    clock: Callable[[], datetime] = utc_now,
    store: Store | None = None,
) -> Starlette:
    """Build the relay app. Raises ConfigError when a template is broken, so the boot stops.

    Without `store` the app opens the one DATABASE_URL names (at start-up, or on first use when
    driven without a lifespan); a store handed in is left for its owner to close."""
    library = library or TemplateLibrary(settings.templates_dir)
    if library.problems:
        raise ConfigError(library.problems)
    signer = HookSigner([k.reveal() for k in settings.secret_keys])
    client = PassKitClient(settings, transport=transport)
    handle = StoreHandle(settings.database_url.reveal(), store=store)

    def timestamp() -> float:
        return clock().timestamp()

    guard = OnceGuard(handle, ttl=settings.idempotency_days * DAY, clock=timestamp)
    relay = Relay(library=library, client=client, clock=clock, guard=guard)

    async def load_revoked() -> dict[str, float]:
        return await (await handle.get()).revoked_hooks()

    revocations = RevocationCache(load_revoked)

    async def record(
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
    ) -> None:
        """Log one delivery, before it is answered: an answered delivery is never missing."""
        entry = delivery_record(
            at=timestamp(),
            source=source,
            hook_id=hook.id,
            template=template,
            trace=trace,
            status=status,
            answer=answer,
            latency_ms=(time.perf_counter() - started) * 1000,
            request_id=request_id,
            request=request,
            log_payloads=settings.log_payloads,
        )
        await (await handle.get()).record_delivery(entry)
        log.info("%s hook=%s template=%s outcome=%s", request_id, hook.id, template,
                 entry.outcome)  # fmt: skip

    async def deliver(request: Request, token: str) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        hook = signer.verify(token)
        trace = Trace()
        logged_fields: dict[str, Any] | None = None
        status, answer = 500, {}
        try:
            await revocations.check(hook.id)  # inside: the log shows a revoked hook still called
            body = await read_body(request, settings.body_limit)
            payload = parse_payload(body, request.headers.get("content-type"))
            logged_fields = fields_for_log(payload.fields)
            dry_run = (
                payload.dry_run
                or request.query_params.get("dry_run", "").lower() in _TRUE
                or request.headers.get("x-relay-dry-run", "").lower() in _TRUE
            )
            key = request.headers.get("idempotency-key", "").strip() or payload.idempotency_key

            async def run() -> dict[str, Any]:
                return await relay.deliver(
                    hook,
                    payload.fields,
                    payload.received,
                    request_id=request_id,
                    dry_run=dry_run,
                    trace=trace,
                )

            if key and not dry_run:
                answer = await guard.once(hook.id, key, run)
                answer["request_id"] = request_id  # a replay still answers as this request
            else:
                answer = await run()
            status = 200
        except RelayError as exc:
            status, answer = exc.status, {"ok": False, "error": exc.as_dict()}
            raise
        finally:
            await record("hook", hook, hook.template, trace=trace, status=status, answer=answer,
                         started=started, request_id=request_id, request=logged_fields)  # fmt: skip
        return JSONResponse(answer)

    stripe_secrets = [s.reveal() for s in settings.stripe_webhook_secrets]

    async def stripe_delivery(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        hook = signer.verify(request.path_params["token"])
        trace = Trace()
        template, event = stripe_events.PARAMS_TEMPLATE, None
        status, answer = 500, dict[str, Any]()
        try:
            await revocations.check(hook.id)
            if not stripe_secrets:
                raise NotConfigured(
                    "Stripe events are off: STRIPE_WEBHOOK_SECRET is not set on this relay.",
                    hint="Set STRIPE_WEBHOOK_SECRET to the endpoint's signing secret (whsec_…).",
                )
            body = await read_body(request, settings.body_limit)
            signature = request.headers.get("stripe-signature")
            event = stripe_events.verify(body, signature, stripe_secrets)
            template = stripe_events.template_name(event)
            status, answer = await handle_event(hook, event, template, request_id, trace)
        except RelayError as exc:
            status, answer = exc.status, {"ok": False, "error": exc.as_dict()}
            raise
        finally:
            summary = stripe_events.summary(event) if event else None
            await record("stripe", hook, template, trace=trace, status=status, answer=answer,
                         started=started, request_id=request_id, request=summary)  # fmt: skip
        return JSONResponse(answer, status_code=status)

    async def handle_event(
        hook: Hook, event: dict[str, Any], template: str, request_id: str, trace: Trace
    ) -> tuple[int, dict[str, Any]]:
        """(status, answer) for a verified event. Only a processed event is marked as seen; a
        transient failure is a 5xx so Stripe retries, a permanent one a 200 `ok: false`
        (Stripe cannot fix it; the log keeps it for a replay)."""
        if library.get(template) is None:
            reason = f"no template {template} on this relay"
            return 200, {"ok": True, "ignored": True, "reason": reason, "request_id": request_id}

        async def run() -> dict[str, Any]:
            return await relay.deliver(
                Hook(hook.id, template, hook.params),
                {},
                [],
                request_id=request_id,
                extra=stripe_events.context(event),
                trace=trace,
            )

        try:
            answer = await guard.once(f"stripe:{hook.id}", str(event["id"]), run)
        except RelayError as exc:
            if exc.status >= 500:
                raise
            return 200, {"ok": False, "request_id": request_id, "error": exc.as_dict()}
        answer["request_id"] = request_id
        return 200, answer

    async def hook_by_path(request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "GET":
            return await describe_hook(request, token)
        return await deliver(request, token)

    async def hook_by_header(request: Request) -> Response:
        return await deliver(request, _token_from_headers(request))

    async def describe_hook(request: Request, token: str) -> Response:
        hook = signer.verify(token)
        await revocations.check(hook.id)
        template = relay.template_for(hook)
        return JSONResponse(
            {
                "ok": True,
                "hook_id": hook.id,
                "template": template.name,
                "operation": template.operation.name,
                "summary": template.summary,
                "params": dict(hook.params),
                "fields": [
                    {
                        "name": f.name,
                        "required": f.required,
                        "type": f.type,
                        "help": f.help,
                        "example": f.example,
                    }
                    for f in template.fields.values()
                ],
                "one_of": list(template.one_of),
                "request_id": request_id_of(request),
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        try:
            database = await (await handle.get()).ping()
        except Exception:
            log.exception("readyz: the database could not be opened")
            database = False
        body = {"ok": database, "database": database, "templates": len(library.templates)}
        return JSONResponse(body, status_code=200 if database else 503)

    async def relay_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RelayError)
        rid = request_id_of(request)
        log.info("%s error=%s status=%d %s", rid, exc.code, exc.status, exc.message[:200])
        return error_response(exc, rid)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {
            404: "There is nothing at this address. Hook URLs look like …/hooks/<token>.",
            405: "This address takes POST or PUT (GET shows what the hook does).",
        }.get(exc.status_code, str(exc.detail))
        body = {
            "ok": False,
            "request_id": request_id_of(request),
            "error": {"code": code, "message": message},
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        body = {
            "ok": False,
            "request_id": request_id_of(request),
            "error": {
                "code": "internal_error",
                "message": "The relay hit an unexpected error; it has been logged.",
                "hint": "Retry later; if it persists, give the operator this request_id.",
            },
        }
        return JSONResponse(body, status_code=500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await handle.get()  # a bad DATABASE_URL stops the boot; migrations run before serving
        cleanup = asyncio.create_task(housekeeping.run_forever(handle, settings, timestamp))
        try:
            yield
        finally:
            cleanup.cancel()
            await client.aclose()
            await handle.close()

    app = Starlette(
        routes=[
            Route("/hooks/{token}", hook_by_path, methods=["GET", "POST", "PUT"]),
            Route("/hooks", hook_by_header, methods=["POST", "PUT"]),
            # Answered here, not redirected: a redirect would hide the real problem from the caller.
            Route("/hooks/", hook_by_header, methods=["POST", "PUT"]),
            Route("/stripe/{token}", stripe_delivery, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            RelayError: relay_error,
            HTTPException: http_error,
            Exception: server_error,
        },
        middleware=[Middleware(AccessLog)],
        lifespan=lifespan,
    )
    app.state.relay = relay
    app.state.store = handle
    app.state.revocations = revocations
    app.state.signer = signer
    app.state.settings = settings
    return app


def app_from_environ() -> Starlette:
    """Factory for `uvicorn --factory relay.app:app_from_environ` (what `relay serve` runs)."""
    return create_app(load_settings(os.environ))

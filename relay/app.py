"""The ASGI app: `create_app(settings)` wires routes, error rendering and the access log.

The delivery routes live in `endpoints`; this module builds the services, renders errors and
runs the lifespan. Every answer is JSON with a `request_id`; every failure uses
the one error shape from SPEC "Answers" and is never a 200. Unexpected exceptions are logged
with their traceback and answered with a JSON 500 by `Front`, the one ASGI layer in front of
the routes (trusted hop, request id and access log, body deadline, last word on errors).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.access.tokens import redact_token
from relay.access.urlguard import guard_of
from relay.admin.console import Console
from relay.delivery import housekeeping
from relay.delivery.pipeline import utc_now
from relay.delivery.services import build_services
from relay.delivery.templating import TemplateLibrary
from relay.errors import ClientGone, InternalError, InvalidBody, RelayError
from relay.events.forwarder import Forwarder, refused_forwards
from relay.passkit.account import AccountError, load_account
from relay.passkit.client import PassKitClient
from relay.settings import Settings, load_settings
from relay.store import DAY, Store
from relay.ui.html import FAVICON_SVG, page
from relay.web.checkout import CheckoutPage
from relay.web.endpoints import Endpoints, new_request_id, request_id_of
from relay.web.event_endpoint import PassKitEvents
from relay.web.proxies import take_trusted_hop
from relay.web.serving import within_body_deadline

log = logging.getLogger("relay")
# A delivery's address: its route's path, and the expression Starlette matches it with.
HOOK_PATH = "/hooks/{token}"
HOOK_DELIVERY = compile_path(HOOK_PATH)[0]
# The cyclic garbage collector's thresholds once the app is up. A delivery makes thousands of
# short-lived objects, so CPython's default (a young collection every 700) ran several
# collections per delivery; 20,000 cut the relay's CPU per delivery ~10 % in the benchmark
# (100,000 was slower again: the young objects no longer fit the CPU's caches). Memory stays
# bounded: reference counting frees nearly everything, and cycles wait at most one such round.
GC_THRESHOLDS = (20_000, 20, 50)


def error_response(exc: RelayError, request_id: str) -> JSONResponse:
    headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
    return JSONResponse(exc.answer(request_id), status_code=exc.status, headers=headers)


class Front:
    """The one ASGI layer in front of the routes, doing in one call what four middlewares did
    (one closure for `send`, one for `receive`, instead of a stack of them on every request):

    - the trusted hop: the client address and scheme as the `hops` trusted proxies saw them
      (relay.web.proxies);
    - the request id on every request and answer, and one log line per request with the hook
      token cut short, because a full token in a log is a working credential;
    - the body deadline: at most `body_seconds` in all for the body (relay.web.serving);
    - the last word on failures: an unexpected exception is logged once with its traceback and
      answered with the JSON 500 (x-request-id included), so nothing reaches the server, which
      would answer in plain text and drop the keep-alive connection (Starlette's own
      server-error middleware is left out: it had nothing left to catch). A sender that hung up
      is one line, not a traceback."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hops: int,
        body_seconds: float,
        deliveries: ASGIApp | None = None,
    ) -> None:
        self.app = app
        self.hops = hops
        self.body_seconds = body_seconds
        # A delivery (POST or PUT to /hooks/<token>) goes straight to its endpoint (issue 24).
        self.deliveries = deliveries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hops > 0:
            take_trusted_hop(scope, self.hops)
        started = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
                # No address of the relay's holds a NUL, and no database column can.
                refused = InvalidBody("The address holds a NUL character (%00).")
                await error_response(refused, request_id)(scope, receive, send_with_id)
            else:
                app = self.app
                if (
                    self.deliveries is not None
                    and scope["method"] in ("POST", "PUT")
                    and (delivery := HOOK_DELIVERY.match(scope["path"]))
                ):
                    scope["path_params"] = {"token": delivery["token"]}
                    app = self.deliveries
                await within_body_deadline(app, self.body_seconds, scope, receive,
                                           send_with_id)  # fmt: skip
        except ClientDisconnect:
            status = ClientGone.status
            scope["state"]["log_note"] = "the sender hung up before its request arrived"
        except Exception:
            log.exception("%s unexpected error", request_id)
            if not answered:
                await error_response(InternalError(), request_id)(scope, receive, send_with_id)
        finally:
            parts = scope["path"].split("/")
            if len(parts) > 2 and parts[1] in ("hooks", "stripe", "passkit", "checkout"):
                parts[2] = redact_token(parts[2])
            log.info(
                "%s %s %s %d %.1fms %s",
                request_id,
                scope["method"],
                "/".join(parts),
                status,
                (time.perf_counter() - started) * 1000,
                scope["state"].get("log_note", ""),
            )


def served_directly(
    endpoint: Callable[[Request], Awaitable[Response]], handlers: Mapping[Any, Any]
) -> ASGIApp:
    """`endpoint` as an ASGI app with the app's exception handlers, as Starlette's router and
    exception layers would serve it, minus their eight frames, two `send` wrappers and route
    matching on each step of every delivery (`Front` sends deliveries here: issue 24)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
            if handler is None:
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None  # as Starlette does: a reused exception's grows otherwise
        await response(scope, receive, send)

    return app


class RelayApp(Starlette):
    """Starlette with `Front` as its one layer before the exception handlers and routes."""

    front: dict[str, Any]
    deliveries: Callable[[Request], Awaitable[Response]] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {key: handler for key, handler in self.exception_handlers.items()
                    if key not in (500, Exception)}  # fmt: skip
        assert not self.user_middleware, "the relay's layers live in Front"
        assert all(isinstance(key, type) for key in handlers), "no status-code handlers"
        inner = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        direct = served_directly(self.deliveries, handlers) if self.deliveries else None
        return Front(inner, **self.front, deliveries=direct)


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
    services = build_services(
        settings, transport=transport, library=library, clock=clock, store=store
    )
    endpoints = Endpoints(services)
    # PassKit's webhooks in, forwarded to Zapier or Make by the outbox's worker (one a process).
    forwarder = Forwarder(services.store, clock=services.timestamp,
                          first_retry=settings.forward_retry, give_up=settings.forward_give_up,
                          retention=settings.retention_days * DAY,
                          guard=guard_of(settings), alerts=services.alerts)  # fmt: skip
    passkit_events = PassKitEvents(endpoints, forwarder)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def favicon(request: Request) -> Response:
        # Pages carry their icon inline; a browser asking anyway gets it, not a 404 in the log.
        return Response(FAVICON_SVG, media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    async def readyz(request: Request) -> Response:
        try:
            database = await (await services.store.get()).ping()
        except Exception:
            log.exception("readyz: the database could not be opened")
            database = False
        body = {"ok": database, "database": database, "templates": len(services.library.templates)}
        return JSONResponse(body, status_code=200 if database else 503)

    async def relay_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RelayError)
        rid = request_id_of(request)
        log.info("%s error=%s status=%d %s", rid, exc.code, exc.status, exc.logged_message())
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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.store.get()  # a bad DATABASE_URL stops the boot; migrations run first
        # Everything built so far (modules, compiled templates) lives as long as the process:
        # keep the garbage collector from walking it again on every full collection. (No
        # collection first: it took 20-30 ms of start-up and found nothing to free.)
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        cleanup = asyncio.create_task(
            housekeeping.run_forever(services.store, settings, services.timestamp)
        )
        # The boot goes on meanwhile; a client of its own, so the deliveries' is left alone.
        checker = PassKitClient(settings, transport=transport, limiter=services.client.limiter)
        connection = asyncio.create_task(log_connection(checker, close=True))
        await services.alerts.start()  # RELAY_ALERT_URL: its sender runs until shutdown
        for line in await refused_forwards(await services.store.get(), guard_of(settings)):
            log.warning("PassKit events: %s", line)
        forwarder.start()
        try:
            yield
        finally:
            cleanup.cancel()
            await forwarder.stop()
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)  # its client closed
            await services.aclose()

    async def admin_off(request: Request) -> Response:
        message = "Set RELAY_ADMIN_PASSWORD on the relay to turn it on."
        return page("message.html", 404, title="Admin console is off",
                    heading="The admin console is off", message=message, link="/")  # fmt: skip

    admin: list[BaseRoute] = (
        Console(endpoints).routes()
        if settings.admin_password
        else [Route("/admin", admin_off), Route("/admin/{rest:path}", admin_off)]
    )
    app = RelayApp(
        routes=[
            # Deliveries first: Starlette tries the routes in order, and the console has dozens.
            Route(HOOK_PATH, endpoints.hook_by_path, methods=["GET", "POST", "PUT"]),
            Route("/hooks/{token}/try", endpoints.try_hook, methods=["POST"]),
            Route("/hooks", endpoints.hook_by_header, methods=["POST", "PUT"]),
            # Answered here, not redirected: a redirect would hide the real problem from the caller.
            Route("/hooks/", endpoints.hook_by_header, methods=["POST", "PUT"]),
            Route("/stripe/{token}", endpoints.stripe_delivery, methods=["POST"]),
            Route("/passkit/{token}", passkit_events.receive, methods=["POST", "PUT", "DELETE"]),
            Route("/checkout/{session_id}", CheckoutPage(services).show, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/favicon.ico", favicon, methods=["GET"]),
            *admin,
        ],
        exception_handlers={
            RelayError: relay_error,
            HTTPException: http_error,
        },
        lifespan=lifespan,
    )
    app.front = {"hops": settings.trusted_proxies, "body_seconds": settings.body_timeout}
    app.deliveries = endpoints.hook_by_path  # its route's POST and PUT, served by Front
    app.state.services = services
    app.state.forwarder = forwarder
    return app


async def log_connection(
    client: PassKitClient, timeout: float = 5.0, *, close: bool = False
) -> None:
    """One start-up line saying what the relay reaches at PassKit (relay.passkit.account), or what
    to change; never a traceback, never more than `timeout` seconds of PassKit calls. `close`:
    the client is closed afterwards."""
    try:
        if client.settings.has_passkit_credentials:
            await _log_account(client, timeout)
    finally:
        if close:
            await client.aclose()


async def _log_account(client: PassKitClient, timeout: float) -> None:
    try:
        account = await load_account(client, timeout=timeout)
    except AccountError as exc:
        log.warning("PassKit: %s", exc)
    except Exception as exc:  # noqa: BLE001 - a start-up check must not take the process down
        log.warning("PassKit: the connection check failed (%s)", type(exc).__name__)
    else:
        drafts = ", ".join(project.name for _, project in account.drafts())
        note = f"; in draft (test passes that expire in two days): {drafts}" if drafts else ""
        log.info("PassKit: connected to %s as %s, %s%s", account.where, account.key,
                 account.summary(), note)  # fmt: skip


def app_from_environ(library: TemplateLibrary | None = None) -> Starlette:
    """Factory for `uvicorn --factory relay.app:app_from_environ` (what `relay serve` runs).

    `library`: the templates `relay serve` has just compiled to check them, handed over in its
    own process (one worker) so they are not compiled twice at start-up; used only when it is
    the folder the settings name."""
    settings = load_settings(os.environ)
    if library is not None and library.folder != settings.templates_dir:
        library = None
    return create_app(settings, library=library)

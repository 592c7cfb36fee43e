"""The sandbox app: PassKit's REST routes over the in-memory state, plus admin and pass pages.

Each API route is a small ASGI endpoint (`ApiCall`) that does, in order: count the call, wait
the configured latency, maybe inject a fault (429/503/drop: before anything runs, so a retry
is safe), check the credentials, decode the body like grpc-gateway (`proto`), run the
operation, answer JSON — or an error with the gRPC code's HTTP status, its body in the shape
chosen (`{"code", "message", "details"}` by default, see `errors.ERROR_SHAPES`).
Routing happens before authentication, as at the real gateway: an unknown path is a 404 and a
wrong method a 501 (code 12) whatever the credentials. Routes, request messages and enum numbers
come from PassKit's contract (relay/passkit/passkit_contract.json), so what PassKit's SDK refuses
the sandbox refuses too, with PassKit's own rules (`validation err: …`).

Not PassKit (no auth, for tests and demos):

    GET  /_sandbox/faults   current faults          POST /_sandbox/faults  change them
    GET  /_sandbox/errors   error body shape        POST /_sandbox/errors  {"shape": "string"}
    GET  /_sandbox/state    counts, records, calls  POST /_sandbox/reset   back to the seed
    GET  /_sandbox/calls    when each API call and fault came (monotonic seconds)
    GET  /                  issued passes           GET  /pass/{id}        a pass's card
                                                    GET  /pass/{id}.pkpass its Wallet file
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relay.passkit.contract import Rpc, message_spec, rpc
from relay.passkit.schema import validate
from relay.sandbox import coupons, distribution, events, members, pages, pkpass, tickets
from relay.sandbox.auth import authenticate
from relay.sandbox.bodies import json_object
from relay.sandbox.errors import (
    ERROR_SHAPES,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNIMPLEMENTED,
    SandboxError,
    invalid,
)
from relay.sandbox.faults import Faults, drop_connection, update_faults
from relay.sandbox.proto import contract_message, decode
from relay.sandbox.state import Clock, Record, State

Operation = Callable[[State, Record], Record | list[Record]]  # a list: a streamed RPC


@dataclass(frozen=True)
class SandboxConfig:
    """How to build a sandbox. `public_url` is where it is reachable (pass pages live at
    `{public_url}/pass/{id}`); `random_seed` seeds the fault RNG; `faults` are the faults in
    force at start and after a reset; `error_shape` is how error bodies look (one of
    ERROR_SHAPES), also at start and after a reset; `account_elsewhere` makes every API call
    answer as a region without this account would (`state.account_elsewhere` at run time).
    The clock is `create_sandbox`'s."""

    api_key: str
    api_secret: str = field(repr=False)
    long_lived_token: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8001"
    seed: bool = True
    random_seed: int | None = None
    faults: Faults = field(default_factory=Faults)
    error_shape: str = "gateway"
    account_elsewhere: bool = False  # answer as a region without this account would

    def __post_init__(self) -> None:
        if self.error_shape not in ERROR_SHAPES:
            raise ValueError(f"error_shape must be one of {', '.join(ERROR_SHAPES)}")


M, C, T = "members.Members.", "single_use_coupons.SingleUseCoupons.", "event_tickets.EventTickets."
# PassKit's RPCs the sandbox serves. Method, path and request message come from the contract
# (PassKit's SDK), never from here: only which operation answers each is the sandbox's.
API: tuple[tuple[str, Operation], ...] = (
    (M + "listPrograms", State.list_programs),
    (M + "listTiers", State.list_tiers),
    (C + "listCouponCampaigns", State.list_campaigns),
    (C + "listCouponOffers", State.list_offers),
    (T + "listProductions", State.list_productions),
    (T + "listVenues", State.list_venues),
    (T + "listTicketTypes", State.list_ticket_types),
    (M + "createProgram", State.create_program),
    (M + "createTier", State.create_tier),
    (M + "enrolMember", members.enrol),
    (M + "updateMember", members.update),
    (M + "deleteMember", members.delete),
    (M + "getMemberRecordById", members.get_by_id),
    (M + "getMemberRecordByExternalId", members.get_by_external_id),
    (M + "listMembers", members.list_members),
    (M + "earnPoints", members.earn),
    (M + "burnPoints", members.burn),
    (M + "setPoints", members.set_points),
    (M + "changeMemberTier", members.change_tier),
    (M + "checkInMember", members.check_in),
    (M + "checkOutMember", members.check_out),
    (M + "updateMemberExpiry", members.update_expiry),
    (C + "createCouponCampaign", State.create_campaign),
    (C + "createCouponOffer", State.create_offer),
    (C + "createCoupon", coupons.create),
    (C + "redeemCoupon", coupons.redeem),
    (C + "voidCoupon", coupons.void),
    (C + "getCouponByExternalId", coupons.get_by_external_id),
    (C + "getCouponById", coupons.get_by_id),
    (T + "createProduction", State.create_production),
    (T + "createVenue", State.create_venue),
    (T + "createTicketType", State.create_ticket_type),
    (T + "issueTicket", tickets.issue),
    (T + "redeemTicket", tickets.redeem),
    (T + "getTicketById", tickets.get_by_id),
    (T + "getTicketByTicketNumber", tickets.get_by_number),
    ("io.Distribution.sendWelcomeEmail", distribution.send_email),
)


def error_response(
    error: SandboxError, headers: dict[str, str] | None = None, shape: str = "gateway"
) -> JSONResponse:
    return JSONResponse(error.body(shape), status_code=error.status, headers=headers)


def _stream(records: list[Record], headers: dict[str, str] | None) -> Response:
    """A server-streamed answer as grpc-gateway writes it: `{"result": …}` a line."""

    async def lines() -> AsyncIterator[bytes]:
        for record in records:
            yield json.dumps({"result": record}, separators=(",", ":")).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/json", headers=headers)


def _request_message(call: Rpc, request: Request, body: bytes) -> Record:
    """grpc-gateway's mapping: the JSON body is the message (`body: "*"`; an empty body is an
    empty message), or the path and query parameters are its fields; either way decoded as the
    RPC's input message, then held to PassKit's validation rules."""
    sent: Any = dict(request.query_params)
    if call.body == "*":
        try:
            sent = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise invalid(f"proto: syntax error: the body is not JSON ({exc})") from None
    if isinstance(sent, dict):
        sent |= dict(request.path_params)
    message = decode(contract_message(call.input), sent)  # by JSON name from here on
    problems = validate(message_spec(call.input, call.rules, relay=False), message)
    if problems:
        said = "; ".join(f"{path} {problem}" for path, problem in problems[:4])
        raise invalid(f"validation err: {said}")
    return message


class ApiCall:
    """One PassKit route as a plain ASGI app, so a fault can act below the HTTP response
    (a dropped connection is not something a Response object can express)."""

    def __init__(self, config: SandboxConfig, state: State, call: Rpc, op: Operation) -> None:
        self.config = config
        self.state = state
        self.key = f"{call.method} {call.path}"  # as counted in GET /_sandbox/state
        self.call = call
        self.operation = op

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        state.count_call(self.key)
        request = Request(scope, receive)
        body = await request.body()
        faults = state.faults
        if faults.latency_ms:
            await anyio.sleep(faults.latency_ms / 1000)
        fault = state.choose_fault(self.call.name.rsplit(".", 1)[1])
        faults = state.faults  # next_429 counted down
        if fault:
            state.faults_injected[fault] += 1
        if fault == "drop":
            await drop_connection(send, 503)
            return
        if fault == "429":
            too_many = SandboxError(RESOURCE_EXHAUSTED, "too many requests, retry later")
            retry_after = {"Retry-After": str(faults.retry_after)}
            response: Response = error_response(too_many, retry_after, state.error_shape)
        elif fault == "503":
            down = SandboxError(UNAVAILABLE, "the service is unavailable")
            response = error_response(down, None, state.error_shape)
        else:
            response = self.answer(request, body)
        if fault == "drop_after":
            await drop_connection(send, response.status_code)  # done, but the answer is lost
            return
        await response(scope, receive, send)

    def answer(self, request: Request, body: bytes) -> Response:
        config = self.config
        if self.state.account_elsewhere:
            # What PassKit answers for an account of the other region is not known: this is
            # the sandbox's guess (a 401 naming the region), for `relay check --live` to show.
            elsewhere = SandboxError(UNAUTHENTICATED, "no such account in this region")
            return error_response(elsewhere, None, self.state.error_shape)
        try:
            refreshed = authenticate(
                request.headers.get("authorization"),
                key=config.api_key,
                secret=config.api_secret,
                long_lived_token=config.long_lived_token,
                now=self.state.clock(),
            )
        except SandboxError as error:
            return error_response(error, None, self.state.error_shape)
        # PassKit hands a JWT caller a fresh token on every authenticated call.
        headers = {"X-Passkit-Token": refreshed} if refreshed else None
        try:
            message = _request_message(self.call, request, body)
            result = self.operation(self.state, message)
            if isinstance(result, list):
                return _stream(result, headers)
            return JSONResponse(result, headers=headers)
        except SandboxError as error:
            return error_response(error, headers, self.state.error_shape)


def _admin_routes(state: State) -> list[Route]:
    async def get_faults(request: Request) -> Response:
        return JSONResponse(state.faults.as_dict())

    async def set_faults(request: Request) -> Response:
        try:
            faults, seed = update_faults(state.faults, json.loads(await request.body() or b"{}"))
        except ValueError as exc:
            return error_response(invalid(str(exc)))
        state.faults = faults
        if seed is not None:
            state.rng.seed(seed)
        return JSONResponse(faults.as_dict())

    async def get_errors(request: Request) -> Response:
        return JSONResponse({"shape": state.error_shape, "shapes": list(ERROR_SHAPES)})

    async def set_errors(request: Request) -> Response:
        changes = json_object(await request.body())
        if changes is None or set(changes) != {"shape"}:
            changes = {}
        shape = changes.get("shape")
        if shape not in ERROR_SHAPES:
            message = f'the body must be {{"shape": …}}, one of {", ".join(ERROR_SHAPES)}'
            return error_response(invalid(message))
        state.error_shape = shape
        return await get_errors(request)

    async def get_state(request: Request) -> Response:
        extra = {"faults": state.faults.as_dict(), "errorShape": state.error_shape}
        return JSONResponse(state.snapshot() | extra)

    async def get_calls(request: Request) -> Response:
        return JSONResponse(state.call_record())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"counts": state.snapshot()["counts"]})

    async def index(request: Request) -> Response:
        return HTMLResponse(pages.index_page(state))

    async def pass_page(request: Request) -> Response:
        pass_id = request.path_params["id"]
        sink: events.EventSink = request.app.state.events
        footer = sink.wallet_buttons(pass_id, request.query_params.get("sent", ""))
        page = pages.pass_page(state, pass_id, footer=footer)
        if page is None:
            return HTMLResponse(pages.not_found_page(pass_id), status_code=404)
        return HTMLResponse(page)

    async def pass_bundle(request: Request) -> Response:
        pass_id = request.path_params["id"]
        bundle = pkpass.pkpass(state, pass_id)
        if bundle is None:
            return HTMLResponse(pages.not_found_page(pass_id), status_code=404)
        return Response(bundle, media_type="application/vnd.apple.pkpass")

    return [
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/errors", get_errors, methods=["GET"]),
        Route("/_sandbox/errors", set_errors, methods=["POST"]),
        Route("/_sandbox/state", get_state, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/calls", get_calls, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Route("/pass/{id}.pkpass", pass_bundle, methods=["GET"]),  # before /pass/{id}
        Route("/pass/{id}", pass_page, methods=["GET"]),
    ]


def _routing_error(state: State) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def routing_error(request: Request, exc: Exception) -> Response:
        """grpc-gateway's answers for an unknown path (404, code 5) or a known path's wrong
        method (501, code 12 UNIMPLEMENTED), in the error shape in force."""
        assert isinstance(exc, HTTPException)
        code, message = {
            404: (NOT_FOUND, "Not Found"),
            405: (UNIMPLEMENTED, "Method Not Allowed"),
        }.get(exc.status_code, (INVALID_ARGUMENT, str(exc.detail)))
        error = SandboxError(code, message)
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "allow"}
        return JSONResponse(error.body(state.error_shape), status_code=error.status,
                            headers=headers)  # fmt: skip

    return routing_error


def create_sandbox(config: SandboxConfig, *, clock: Clock = time.time) -> Starlette:
    """A fresh sandbox; its state is `app.state.sandbox` for in-process tests."""
    state = State(
        clock=clock,
        seed=config.seed,
        random_seed=config.random_seed,
        pass_url=config.public_url.rstrip("/") + "/pass",
        faults=config.faults,
        error_shape=config.error_shape,
        account_elsewhere=config.account_elsewhere,
    )
    sink = events.EventSink(state)  # PassKit's webhooks: "created" fired on each create
    api = [
        Route(rpc(name).path, ApiCall(config, state, rpc(name), sink.firing(kind, op)
                                      if (kind := events.CREATES.get(name)) else op),
              methods=[rpc(name).method])
        for name, op in API
    ]  # fmt: skip
    app = Starlette(
        routes=[*api, *_admin_routes(state), *sink.routes()],
        exception_handlers={HTTPException: _routing_error(state)},
    )
    app.state.sandbox = state
    app.state.events = sink
    app.state.config = config
    return app

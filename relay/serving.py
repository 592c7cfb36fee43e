"""How the relay faces the network: server timeouts and the client address behind proxies.

A hostile sender needs no hook token to hold a connection open, so every phase of a request is
bounded (issue 10):

- **headers**: the request line and headers must arrive within `RELAY_HEADER_TIMEOUT` seconds of
  connecting, or of the first byte of the next request on a kept-alive connection
  (`HeaderDeadline`, built into uvicorn's HTTP protocols below: uvicorn has no such setting);
- **body**: the relay waits at most `RELAY_BODY_TIMEOUT` seconds in all for a request's body;
  then the answer is 408 `body_timeout` and the connection is closed (`BodyDeadline`, ASGI
  middleware);
- **idle**: a kept-alive connection with no new request is closed after
  `RELAY_KEEP_ALIVE_TIMEOUT` seconds (uvicorn's own timer).

`uvicorn_options(settings)` is what `relay serve` and `relay demo` hand to `uvicorn.run`.

`TrustedHop` sets the client address (and scheme) from X-Forwarded-For (and X-Forwarded-Proto)
as written by the `RELAY_TRUSTED_PROXIES` proxies in front of the relay: each appends the
address it saw, so the entry that many places from the right is the one a trusted proxy wrote.
Everything left of it was written by the client and proves nothing.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Iterable
from typing import Any, cast

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl, httptools_impl
from uvicorn.server import ServerState

from relay.errors import PayloadError
from relay.settings import Settings

# -- headers: a deadline inside uvicorn's HTTP protocols -----------------------------------------


class HeaderDeadline:
    """Closes a connection whose request line and headers are not complete `seconds` after
    it was started; a peer that does not even read what is still queued for it is cut off
    (`abort`) after as long again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
        self.stop()
        self._timer = loop.call_later(self.seconds, self._expire, loop, transport)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
        self._timer = None
        if not transport.is_closing():
            transport.close()  # sends what is queued first, then closes
            self._timer = loop.call_later(self.seconds, transport.abort)


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline (`HeaderDeadline`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_deadline = HeaderDeadline(header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_deadline.start(self.loop, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        _watch_headers(self.header_deadline, self.loop, self.transport, self.cycle)


class H11Protocol(h11_impl.H11Protocol):
    """uvicorn's h11 protocol with a header deadline (`HeaderDeadline`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_deadline = HeaderDeadline(header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_deadline.start(self.loop, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        _watch_headers(self.header_deadline, self.loop, self.transport, self.cycle)


def _watch_headers(
    deadline: HeaderDeadline,
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    cycle: httptools_impl.RequestResponseCycle | h11_impl.RequestResponseCycle | None,
) -> None:
    """After bytes were parsed: a request whose headers are complete (its cycle still
    running) stops the deadline; otherwise the bytes began (or continue) a request, and the
    deadline runs from the first of them. An idle kept-alive connection is left to uvicorn's
    keep-alive timer, which any byte cancels."""
    if cycle is not None and not cycle.response_complete:
        deadline.stop()
    elif not deadline.running and not transport.is_closing():
        deadline.start(loop, transport)


def http_protocol(header_timeout: float, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's `http=` with a header deadline: httptools (what uvicorn's `auto` picks; a
    dependency) or `h11`. A partial of a module-level class, so it pickles for `--workers`;
    uvicorn only ever calls it like the class."""
    protocol = H11Protocol if http == "h11" else HttpToolsProtocol
    return cast(type[asyncio.Protocol], functools.partial(protocol, header_timeout=header_timeout))


def uvicorn_options(settings: Settings, *, http: str = "auto") -> dict[str, Any]:
    """The server settings `relay serve` and `relay demo` give `uvicorn.run` (with their own
    app, host, port, workers and log level): the timeouts above, and no proxy headers read by
    uvicorn, which would take the leftmost X-Forwarded-For entry (`TrustedHop` reads them)."""
    return {
        "http": http_protocol(settings.header_timeout, http),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "proxy_headers": False,
        "access_log": False,
    }


# -- body: a deadline on reading it --------------------------------------------------------------


class BodyTimedOut(PayloadError):
    status = 408
    code = "body_timeout"
    default_hint = (
        "Send the whole body at once, as Zapier, Make and Stripe do; the relay closes a "
        "connection whose body trickles in."
    )


class BodyDeadline:
    """ASGI middleware: the relay waits at most `seconds` in all for a request's body (time the
    app spends between reads is not counted). Past that, reading the body raises `BodyTimedOut`:
    the app renders it as its usual JSON error, or, if it does not, this middleware answers the
    same 408; either answer carries `Connection: close`, so the server drops the connection."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        left = self.seconds
        body_read = expired = started = False

        def timed_out() -> BodyTimedOut:
            return BodyTimedOut(f"The request body did not arrive within {self.seconds:g} s.")

        async def timed_receive() -> Message:
            nonlocal left, body_read, expired
            if body_read:  # only http.disconnect is left to come: wait for it freely
                return await receive()
            if expired:
                raise timed_out()
            began = time.monotonic()
            try:
                with anyio.fail_after(max(left, 0.0)):
                    message = await receive()
            except TimeoutError:
                expired = True
                raise timed_out() from None
            left -= time.monotonic() - began
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if expired:
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, timed_receive, send_closing)
        except BodyTimedOut as exc:
            if started:
                raise
            request_id = scope.get("state", {}).get("request_id")
            response = JSONResponse(exc.answer(request_id), status_code=exc.status)
            await response(scope, receive, send_closing)


# -- the client address: from the hop a trusted proxy wrote -------------------------------------


def _entries(values: Iterable[str]) -> list[str]:
    """The comma-separated entries of every header of one name, in order (several headers are
    one list, as HTTP says)."""
    return [entry.strip() for value in values for entry in value.split(",")]


def _address(entry: str) -> str | None:
    """An IP address from one X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:80`, `::1`,
    `[::1]:80`), normalised; None for anything else (`unknown`, `_hidden`, garbage)."""
    host = entry.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def trusted_client(forwarded_for: Iterable[str], hops: int) -> str | None:
    """The client address as the outermost of `hops` trusted proxies saw it: the `hops`-th
    X-Forwarded-For entry from the right. None when nothing is trusted (`hops` 0), or the list
    is shorter than `hops` (the request did not come through them all) or that entry is not an
    address: the caller keeps the socket's peer then."""
    if hops <= 0:
        return None
    entries = _entries(forwarded_for)
    if len(entries) < hops:
        return None
    return _address(entries[-hops])


def trusted_scheme(forwarded_proto: Iterable[str], hops: int) -> str | None:
    """The scheme the client used, from X-Forwarded-Proto by the same rule; None if unknown."""
    if hops <= 0:
        return None
    entries = _entries(forwarded_proto)
    if len(entries) < hops:
        return None
    scheme = entries[-hops].lower()
    return scheme if scheme in ("http", "https") else None


class TrustedHop:
    """ASGI middleware: `scope["client"]` (and `scope["scheme"]`) as the trusted proxies saw
    them, so the login limiter, the logs and the Secure cookie flag follow the real client.
    With `hops` 0 the socket's peer stands and the headers are ignored."""

    def __init__(self, app: ASGIApp, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hops > 0 and scope["type"] == "http":
            forwarded_for: list[str] = []
            forwarded_proto: list[str] = []
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    forwarded_proto.append(value.decode("latin-1"))
            client = trusted_client(forwarded_for, self.hops)
            scheme = trusted_scheme(forwarded_proto, self.hops)
            if client is not None:
                scope["client"] = (client, 0)  # the port a proxy saw is not passed on
            if scheme is not None:
                scope["scheme"] = scheme
        await self.app(scope, receive, send)

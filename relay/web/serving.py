"""How the relay faces the network: timeouts and limits on every phase of a request.

A hostile sender needs no hook token to hold a connection open, or to fill the server's memory,
so every phase of a request is bounded (issue 10):

- **headers**: the request line and headers must arrive within `RELAY_HEADER_TIMEOUT` seconds of
  connecting, or of the first byte of the next request on a kept-alive connection
  (`HeaderDeadline`), and take at most `RELAY_HEADER_LIMIT` bytes (`HeadLimit`): past that the
  answer is 431 `headers_too_large` and the connection is closed. Both are built into uvicorn's
  HTTP protocols below: uvicorn has neither setting, and httptools has no size limit at all;
- **body**: the relay waits at most `RELAY_BODY_TIMEOUT` seconds in all for a request's body;
  then the answer is 408 `body_timeout` and the connection is closed (`BodyDeadline`, ASGI
  middleware);
- **idle**: a kept-alive connection with no new request is closed after
  `RELAY_KEEP_ALIVE_TIMEOUT` seconds (uvicorn's own timer).

`uvicorn_options(settings)` is what `relay serve` and `relay demo` hand to `uvicorn.run`
(`server_options` what `relay sandbox` does, with the defaults). The client address behind
proxies is `relay.web.proxies`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import h11
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl, httptools_impl
from uvicorn.server import ServerState

from relay.errors import BodyTimeout, HeadersTooLarge
from relay.ids import unique_hex
from relay.settings import Settings

log = logging.getLogger("relay")

# -- headers: a deadline and a size limit inside uvicorn's HTTP protocols -------------------------


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


class HeadLimit:
    """Counts the bytes of the request head (request line and headers, up to the blank line)
    a protocol is reading, so that past `limit` it is refused before it is buffered.

    The count is one addition per `data_received` while a head is being read; it restarts with
    each request (`after`: the cycle of the request before this head). Bytes that complete one
    request and begin the next in a single read are not counted for the next one: a pipelined
    head may pass the limit by up to one read (at most 256 KiB), never more."""

    __slots__ = ("after", "count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.after: object = None

    def add(self, size: int, cycle: object) -> bool:
        """Counts `size` more bytes of the head that follows `cycle`; True while within the
        limit. Past it, `room` says how many of them the limit still allows."""
        if cycle is not self.after:
            self.after, self.count = cycle, 0
        self.count += size
        return self.count <= self.limit

    def room(self, size: int) -> int:
        """How many of the last `size` bytes counted fit within the limit."""
        return max(self.limit - (self.count - size), 0)

    def refuse(
        self, transport: asyncio.Transport, default_headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Answers 431 `headers_too_large` (the relay's JSON error, with a request id) and
        closes the connection; nothing more is read from it."""
        request_id = "req_" + unique_hex(
            16
        )  # as relay.web.endpoints.new_request_id (a heavy import)
        log.info("%s - - 431 request line and headers over %d bytes; connection closed",
                 request_id, self.limit)  # fmt: skip
        message = f"The request line and headers take more than {self.limit} bytes."
        error = HeadersTooLarge(message)
        headers = {"connection": "close", "x-request-id": request_id}
        response = JSONResponse(error.answer(request_id), error.status, headers)
        lines = [b"HTTP/1.1 431 Request Header Fields Too Large"]
        lines += [name + b": " + value for name, value in default_headers]
        lines += [name + b": " + value for name, value in response.raw_headers]
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + response.body)
        transport.close()


class _HeadGuards:
    """What both protocols below add to uvicorn's: a header deadline (`HeaderDeadline`) from
    the moment a connection is made, and a limit on a request head's size (`HeadLimit`)."""

    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
        header_limit: int,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self.header_deadline = HeaderDeadline(header_timeout)
        self.head = HeadLimit(header_limit)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.header_deadline.start(self.loop, cast(asyncio.Transport, transport))

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline.stop()
        super().connection_lost(exc)  # type: ignore[misc]


class _HeadWithBody:
    """A transport as one answer's cycle writes to it. uvicorn writes an answer's head and its
    body apart: two system calls, two TCP segments, where one does (~10 µs of a delivery). The
    head (the first write that is not an interim `HTTP/1.1 1xx`, such as `100 Continue`, which
    goes at once) waits here for the body's first part, or for the answer's end (a HEAD
    request's, an error's), and goes out with it. It holds no reference to the cycle: a cycle
    per request would be left for the garbage collector."""

    __slots__ = ("_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._started and not data.startswith(b"HTTP/1.1 1"):
            self._started, self._head = True, data  # the head: held for the body
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpToolsProtocol(_HeadGuards, httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline (`HeaderDeadline`), a limit on the
    size of a request head (`HeadLimit`), and each answer written in one piece
    (`_HeadWithBody`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_body = False  # between a request's headers and its end, as the parser reads
        self.refused = False  # a head past the limit, refused once earlier answers are out

    def on_headers_complete(self) -> None:
        self.in_body = True
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before and self.cycle is not None:  # a new request's cycle
            held = _HeadWithBody(self.transport)
            self.cycle.transport = cast(asyncio.Transport, held)
            # Its own answer's end flushes its own head (self.cycle may be a pipelined
            # request's by then).
            self.cycle.on_response = functools.partial(self._answered, held)

    def _answered(self, held: _HeadWithBody) -> None:
        held.flush()  # an answer with no body (HEAD): its head, now
        self.on_response_complete()

    def on_message_complete(self) -> None:
        self.in_body = False
        super().on_message_complete()

    def refuse_head(self) -> None:
        """431 now, or, if earlier pipelined requests are still being answered (httptools
        reads on while they are), once they are: nothing more is parsed meanwhile."""
        if self.cycle is None or self.cycle.response_complete:
            self.head.refuse(self.transport, self.server_state.default_headers)
        else:
            self.refused = True
            self.flow.pause_reading()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.refused and self.cycle.response_complete and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.head.refuse(self.transport, self.server_state.default_headers)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_body or self.head.add(len(data), self.cycle):
            super().data_received(data)
        else:
            _parse_within_limit(self, data, super().data_received, lambda: not self.in_body)
        _watch_headers(self.header_deadline, self.loop, self.transport, self.cycle)


class _H11Connection(h11.Connection):
    """h11's server side, whose own limit on an incomplete head (what arrived while an earlier
    pipelined request was answered: `HeadLimit` counts the rest) calls `too_large` instead of
    raising: uvicorn would answer 400 in plain text. The same limit on a chunked body's framing
    still raises (400)."""

    def __init__(self, limit: int, too_large: Callable[[], None]) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limit)
        self.too_large = too_large

    def next_event(self) -> Any:
        reading_head = self.their_state is h11.IDLE
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint != 431 or not reading_head:
                raise
            self.too_large()
            return h11.PAUSED  # uvicorn stops reading events; the connection is closing


class H11Protocol(_HeadGuards, h11_impl.H11Protocol):
    """uvicorn's h11 protocol with a header deadline (`HeaderDeadline`) and a limit on the size
    of a request head (`HeadLimit`, and h11's own `max_incomplete_event_size`, set to the same
    limit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _H11Connection(self.head.limit, self.refuse_head)

    def _reading_head(self) -> bool:
        # IDLE: h11 parses what arrives as a head. Other states: a body (SEND_BODY), or a
        # pipelined request h11 only buffers (DONE) until the one before it is answered; its
        # own limit covers that buffer.
        return self.conn.their_state is h11.IDLE

    def refuse_head(self) -> None:
        # h11 reads a head only once the answer before it is complete: 431 at once.
        self.head.refuse(self.transport, self.server_state.default_headers)

    def data_received(self, data: bytes) -> None:
        if not self._reading_head() or self.head.add(len(data), self.cycle):
            super().data_received(data)
        else:
            _parse_within_limit(self, data, super().data_received, self._reading_head)
        _watch_headers(self.header_deadline, self.loop, self.transport, self.cycle)


def _parse_within_limit(
    protocol: HttpToolsProtocol | H11Protocol,
    data: bytes,
    parse: Callable[[bytes], None],
    reading_head: Callable[[], bool],
) -> None:
    """`data` takes the head being read past its limit: only the bytes within the limit are
    parsed. If the head ends there, the rest is parsed as usual (counted again if it begins
    another head); if not, the request is refused (431) and the rest is never looked at."""
    transport = protocol.transport
    while data:
        room = protocol.head.room(len(data))
        cycle = protocol.cycle
        if room:  # never empty: to h11 that means the peer closed
            parse(data[:room])
        if transport.is_closing() or transport.get_protocol() is not protocol:
            return  # uvicorn refused it (400) or handed the connection over (WebSocket)
        if protocol.cycle is cycle:  # the head did not end within the limit
            protocol.refuse_head()
            return
        data = data[room:]
        if data and (not reading_head() or protocol.head.add(len(data), protocol.cycle)):
            parse(data)
            return


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


def http_protocol(
    header_timeout: float, header_limit: int, http: str = "auto"
) -> type[asyncio.Protocol]:
    """uvicorn's `http=` with a header deadline and a head size limit: httptools (what
    uvicorn's `auto` picks; a dependency) or `h11`. A partial of a module-level class, so it
    pickles for `--workers`; uvicorn only ever calls it like the class."""
    protocol = H11Protocol if http == "h11" else HttpToolsProtocol
    made = functools.partial(protocol, header_timeout=header_timeout, header_limit=header_limit)
    return cast(type[asyncio.Protocol], made)


def server_options(
    *,
    header_timeout: float = Settings.header_timeout,
    header_limit: int = Settings.header_limit,
    keep_alive_timeout: float = Settings.keep_alive_timeout,
    http: str = "auto",
) -> dict[str, Any]:
    """The server settings for `uvicorn.run` (beside the app, host, port, workers and log
    level): the header deadline and size limit above (h11's own limit set to the same), the
    keep-alive timeout, and no proxy headers read by uvicorn, which would take the leftmost
    X-Forwarded-For entry, and by default from 127.0.0.1 (`TrustedHop` reads them)."""
    return {
        "http": http_protocol(header_timeout, header_limit, http),
        "h11_max_incomplete_event_size": header_limit,
        "timeout_keep_alive": keep_alive_timeout,
        "proxy_headers": False,
        "access_log": False,
        "ws": "none",  # no WebSocket routes: no upgrade path to attack
    }


def uvicorn_options(settings: Settings, *, http: str = "auto") -> dict[str, Any]:
    """What `relay serve` and `relay demo` give `uvicorn.run`: `server_options` as configured."""
    return server_options(
        header_timeout=settings.header_timeout,
        header_limit=settings.header_limit,
        keep_alive_timeout=settings.keep_alive_timeout,
        http=http,
    )


# -- body: a deadline on reading it --------------------------------------------------------------


class BodyDeadline:
    """ASGI middleware: the relay waits at most `seconds` in all for a request's body (time the
    app spends between reads is not counted). Past that, reading the body raises `BodyTimeout`:
    the app renders it as its usual JSON error, or, if it does not, this middleware answers the
    same 408; either answer carries `Connection: close`, so the server drops the connection.
    (The relay's own app does this inside its one front layer: `within_body_deadline`.)"""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await within_body_deadline(self.app, self.seconds, scope, receive, send)


async def within_body_deadline(
    app: ASGIApp, seconds: float, scope: Scope, receive: Receive, send: Send
) -> None:
    """`app` on one HTTP request whose body must arrive within `seconds` (`BodyDeadline`)."""
    left = seconds
    body_read = expired = started = False
    # uvicorn's request cycle sets this event when body bytes are waiting: a read then returns
    # at once, and needs no timer (~4 µs a request). Another server, or another uvicorn, has no
    # such attribute and every read is timed.
    arrived: asyncio.Event | None = getattr(
        getattr(receive, "__self__", None), "message_event", None
    )

    def timed_out() -> BodyTimeout:
        return BodyTimeout(f"The request body did not arrive within {seconds:g} s.")

    async def timed_receive() -> Message:
        nonlocal left, body_read, expired
        if body_read:  # only http.disconnect is left to come: wait for it freely
            return await receive()
        if expired:
            raise timed_out()
        if arrived is not None and arrived.is_set():
            message = await receive()  # bytes are waiting: no wait, so no timer
        else:
            began = time.monotonic()
            try:
                # asyncio's own timeout: ~4 µs a read less than anyio's cancel scope, and the
                # relay only ever runs on asyncio (uvicorn's loop).
                async with asyncio.timeout(max(left, 0.0)):
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
        await app(scope, timed_receive, send_closing)
    except BodyTimeout as exc:
        if started:
            raise
        request_id = scope.get("state", {}).get("request_id")
        response = JSONResponse(exc.answer(request_id), status_code=exc.status)
        await response(scope, receive, send_closing)


def busy_port(host: str, port: int, command: str) -> str | None:
    """What to say when `port` cannot be bound, said before anything starts (a banner with URLs
    that cannot work, the app's background work): the port, and `command` on another one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {exc.strerror}"
            return f"port {port} is in use: {command} --port {port + 10}"
    return None

"""The HTTP client under the PassKit client: one small interface, two implementations.

    request(method, path, body, headers, timeout) -> Reply(status, headers, body)

- `AiohttpUpstream`, the production one: measured on this project's benchmark as the fastest
  pooled client (a bare proxy over it serves ~2,000 req/s here, against ~1,500 for httpx over
  the httpx-aiohttp transport, ~870 for httpx2 and ~190 for httpx's own transport).
- `HttpxUpstream`, for tests: httpx with an injected transport, so respx mocks PassKit.

Either raises only `UpstreamTimeout` (no answer in time: the call may have been carried out)
or `UpstreamUnreachable` (refused, reset, or a pooled keep-alive connection the server closed:
nothing was answered, so a retry is safe for idempotent calls and guarded for creates).

`request_lines` is the same call for PassKit's server-streamed lists (one JSON object a line):
the answer is read as it arrives, split into lines, and cut at `max_bytes` (`complete` False).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp


class UpstreamTimeout(Exception):
    pass


class UpstreamUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class LinesReply:
    status: int
    headers: Mapping[str, str]
    lines: list[bytes]  # non-empty lines, without their newline
    complete: bool  # False: the answer went past max_bytes and was cut there


class _LineSplitter:
    """Chunks in, whole lines out, stopping at `max_bytes` read."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.read = 0
        self.lines: list[bytes] = []
        self._partial = b""

    def feed(self, chunk: bytes) -> bool:
        """Takes a chunk; False once the bound is reached (stop reading)."""
        self.read += len(chunk)
        *whole, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.strip() for line in whole if line.strip()]
        return self.read <= self.max_bytes

    def reply(self, status: int, headers: Mapping[str, str], complete: bool) -> LinesReply:
        if complete and self._partial.strip():
            self.lines.append(self._partial.strip())
        return LinesReply(status, headers, self.lines, complete)


class Upstream(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
    ) -> Reply: ...

    async def request_lines(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        max_bytes: int,
    ) -> LinesReply: ...

    async def aclose(self) -> None: ...


def _in_words(exc: BaseException) -> str:
    """What went wrong with the connection, for the answer and the console: words, never the
    client library's class name (which stays in the log through the exception chain)."""
    name = type(exc).__name__
    if "Timeout" in name:
        return "the connection timed out"
    if any(part in name for part in ("Disconnect", "Protocol", "Payload", "Reset", "Read")):
        return "the connection broke off before PassKit's answer arrived"
    return "no connection could be made"


_aiohttp_loaded = False


async def _load_aiohttp() -> None:
    """aiohttp takes ~100 ms to import (it builds its TLS contexts and dozens of attrs classes
    as it loads): a third of the relay's start-up. It is loaded by the first PassKit call (the
    boot's own account check, right after start-up), on a worker thread, so the event loop
    keeps answering meanwhile. Calls made while it loads each wait on a thread of their own
    (Python's import lock holds them there), never on the loop."""
    global _aiohttp_loaded
    if not _aiohttp_loaded:
        await asyncio.to_thread(importlib.import_module, "aiohttp")
        _aiohttp_loaded = True


class _AiohttpFailures:
    """`with _AIOHTTP_FAILURES:` aiohttp's failures as the upstream's two: no answer in time,
    or no connection. A class, not a generator's context manager: ~1.5 µs a call less."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if exc is None:
            return
        import aiohttp  # loaded already: _load_aiohttp ran before any call

        if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise UpstreamUnreachable(_in_words(exc)) from exc
            raise UpstreamTimeout(_in_words(exc)) from exc
        if isinstance(exc, TimeoutError | aiohttp.ClientError | OSError):
            raise UpstreamUnreachable(_in_words(exc)) from exc
        # Anything else goes on as raised.


_AIOHTTP_FAILURES = _AiohttpFailures()  # holds nothing: one for every call


@functools.lru_cache(maxsize=16)  # the settings' few pairs: not one new object a call
def _timeouts(connect: float, read: float) -> aiohttp.ClientTimeout:
    import aiohttp  # loaded by _open

    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


class AiohttpUpstream:
    """One pooled aiohttp session, opened on first use (it must belong to the running loop)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, limit: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            await _load_aiohttp()
            import aiohttp

            if self._session is None or self._session.closed:  # not opened meanwhile
                connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=30)
                # No cookie jar: PassKit's API authenticates by header, and the default jar
                # reads every answer's cookies and filters them for every call (~3 µs each).
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    headers=self.headers,
                    auto_decompress=True,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
    ) -> Reply:
        session = await self._open()
        limits = _timeouts(connect_timeout, timeout)
        with _AIOHTTP_FAILURES:
            async with session.request(
                method, self.base_url + path, data=body, headers=headers, timeout=limits,
                allow_redirects=False,
            ) as response:  # fmt: skip
                return Reply(response.status, response.headers, await response.read())

    async def request_lines(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        max_bytes: int,
    ) -> LinesReply:
        session = await self._open()
        limits = _timeouts(connect_timeout, timeout)
        splitter = _LineSplitter(max_bytes)
        with _AIOHTTP_FAILURES:
            async with session.request(
                method, self.base_url + path, data=body, headers=headers, timeout=limits,
                allow_redirects=False,
            ) as response:  # fmt: skip
                async for chunk in response.content.iter_any():
                    if not splitter.feed(chunk):
                        return splitter.reply(response.status, response.headers, False)
                return splitter.reply(response.status, response.headers, True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@contextmanager
def _httpx_failures() -> Iterator[None]:
    """httpx's failures as the upstream's two: no answer in time, or no connection."""
    try:
        yield
    except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
        raise UpstreamTimeout(_in_words(exc)) from exc
    except httpx.TransportError as exc:  # connect errors, resets, pool timeouts
        raise UpstreamUnreachable(_in_words(exc)) from exc


class HttpxUpstream:
    """httpx over an injected transport: what the tests use to put respx in PassKit's place."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], transport: httpx.AsyncBaseTransport
    ) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self._http = httpx.AsyncClient(
            base_url=base_url, transport=transport, headers=dict(headers), limits=limits
        )

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
    ) -> Reply:
        with _httpx_failures():
            response = await self._http.request(
                method, path, content=body, headers=headers,
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
            )  # fmt: skip
        return Reply(response.status_code, response.headers, response.content)

    async def request_lines(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        max_bytes: int,
    ) -> LinesReply:
        splitter = _LineSplitter(max_bytes)
        request = self._http.build_request(
            method, path, content=body, headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )  # fmt: skip
        with _httpx_failures():
            response = await self._http.send(request, stream=True)
            try:
                async for chunk in response.aiter_bytes():
                    if not splitter.feed(chunk):
                        return splitter.reply(response.status_code, response.headers, False)
            finally:
                await response.aclose()
        return splitter.reply(response.status_code, response.headers, True)

    async def aclose(self) -> None:
        await self._http.aclose()

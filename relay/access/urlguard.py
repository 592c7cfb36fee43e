"""Where the relay may send on an operator's say-so: one guard for every such URL — a PassKit
events URL's `forward_to` (relay.events.forwarder), `RELAY_ALERT_URL` (relay.delivery.alerts).

A URL passes when it is `https`, carries no user name or password, and its host is public. A
host that is an IP address (in any spelling a resolver reads: `127.1`, `2130706433`,
`0x7f000001`, `[::ffff:127.0.0.1]`) or a local name (`localhost`, `intranet`, `*.internal`) is
refused as soon as it is seen: when minting, in words (`problem`). A name is judged by where it
leads when the relay connects: `guarded_transport` resolves it, keeps only public addresses
(not private, loopback, link-local, multicast, reserved or unspecified; an IPv4 address inside
IPv6 judged as IPv4) and connects to exactly the address it checked, so a name that answers
one address to a first look-up and another to the connection (DNS rebinding) gains nothing.
Redirects are never followed by the callers, so a public receiver cannot point onwards.

The ways past it: URLs starting with one of `RELAY_ALLOW_URLS` (comma-separated prefixes: a
receiver on the operator's own network, the tests' loopback receivers), matched on scheme and
host exactly, on the port when the prefix names one, and on the path as a prefix (so
`http://10.0.0.5` never lets `http://10.0.0.5.example.net` through); and exact URLs the relay
itself trusts (the demo's own catch page). PASSKIT_API_URL is not an operator's say-so and is
not guarded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from relay.forms.imageurls import Fault, public_address, public_https_fault
from relay.settings import Settings

HOW_TO_ALLOW = "RELAY_ALLOW_URLS lets a receiver on your own network through"
_WORDS: dict[Fault, str] = {
    "unreadable": "It is not a web address: use an https://… URL.",
    "scheme": "It must start with https:// (the relay sends only over HTTPS; {allow}).",
    "no_host": "It has no host name: use an https://… URL.",
    "credentials": "It must not carry a user name or password in the address.",
    "private": "{host} is a private or local network address: the relay sends only to public "
    "addresses ({allow}).",
    "local": "{host} names a machine on a local network: the relay sends only to public "
    "addresses ({allow}).",
}


class UrlRefused(httpx.ConnectError):
    """A URL the guard refuses; its message is a sentence naming the host, never the URL (a
    catch hook's path and an alert URL are credentials)."""


def _key(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.rstrip(".").lower(), port, parts.path or "/"


@dataclass(frozen=True)
class UrlGuard:
    """`allow`: URL prefixes let through as they are; `exact`: whole URLs let through."""

    allow: Sequence[str] = ()
    exact: Sequence[str] = ()

    def allowed(self, url: str) -> bool:
        """Let through by RELAY_ALLOW_URLS or as one of the relay's own exact URLs."""
        if url.strip() in self.exact:
            return True
        key = _key(url)
        if key is None:
            return False
        for prefix in self.allow:
            want = _key(prefix)
            if want is None or key[:2] != want[:2] or not key[3].startswith(want[3]):
                continue
            if want[2] is None or key[2] == want[2]:  # a prefix naming no port: any port
                return True
        return False

    def problem(self, url: str) -> str | None:
        """Why `url` may not be called, as a sentence naming its host; None when it may (as far
        as can be told without the network: a name's addresses are checked when connecting)."""
        if self.allowed(url):
            return None
        fault = public_https_fault(url)
        if fault is None:
            return None
        kind, host = fault
        return _WORDS[kind].format(host=host, allow=HOW_TO_ALLOW)

    def transport(self, inner: httpx.AsyncBaseTransport | None = None) -> GuardedTransport:
        return GuardedTransport(self, inner)


def guard_of(settings: Settings) -> UrlGuard:
    """The guard as this relay's settings set it: RELAY_ALLOW_URLS, and the demo's catch page."""
    return UrlGuard(settings.allow_urls, settings.allow_exact_urls)


def _what(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, words in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local "
                        "address"), ("is_multicast", "a multicast address"),
                        ("is_private", "a private address"), ("is_reserved", "a reserved "
                        "address")):  # fmt: skip
        if getattr(address, test):
            return words
    return "not a public address"


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses: resolves the host itself and connects to the very
    address it checked (not to the name again), then checks the socket's peer once more."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} could not be looked up ({exc})") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        public = [a for a in addresses if public_address(a)]
        if not public:
            first = addresses[0] if addresses else None
            said = f"{first}, {_what(first)}" if first is not None else "no address"
            raise UrlRefused(
                f"{host} leads to {said}: the relay sends only to public addresses "
                f"({HOW_TO_ALLOW})."
            )
        error: Exception | None = None
        for address in public:
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            peer = stream.get_extra_info("server_addr")
            if peer and not public_address(ipaddress.ip_address(peer[0])):
                await stream.aclose()
                raise UrlRefused(f"{host} connected to {peer[0]}, not a public address.")
            return stream
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("The relay does not send to local sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport() -> httpx.AsyncHTTPTransport:
    """httpx's transport connecting only to public addresses, whatever the URL says."""
    transport = httpx.AsyncHTTPTransport()
    # httpx builds its pool on a network backend of its own choosing: the same pool, on a
    # backend that checks every address it connects to.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_CheckedBackend()
    )
    return transport


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport behind the guard: a URL let through goes out as it is; any other is
    checked (`UrlGuard.problem`) and connected through `_CheckedBackend`. UrlRefused (an
    httpx.ConnectError) says why not."""

    def __init__(self, guard: UrlGuard, inner: httpx.AsyncBaseTransport | None = None) -> None:
        """`inner` (tests' mock transports): sends what passes the guard's look at the URL,
        with no connection to check."""
        self.guard = guard
        self._open: httpx.AsyncBaseTransport = inner or httpx.AsyncHTTPTransport()
        self._checked: httpx.AsyncBaseTransport = inner or checked_transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if self.guard.allowed(url):
            return await self._open.handle_async_request(request)
        problem = self.guard.problem(url)
        if problem is not None:
            raise UrlRefused(problem, request=request)
        return await self._checked.handle_async_request(request)

    async def aclose(self) -> None:
        await self._open.aclose()
        if self._checked is not self._open:
            await self._checked.aclose()

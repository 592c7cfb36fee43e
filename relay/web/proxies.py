"""The client address (and scheme) behind the proxies in front of the relay.

`TrustedHop` sets them from X-Forwarded-For (and X-Forwarded-Proto) as written by the
`RELAY_TRUSTED_PROXIES` proxies in front of the relay: each appends the address it saw, so the
entry that many places from the right is the one a trusted proxy wrote. Everything left of it
was written by the client and proves nothing. (uvicorn's own proxy headers are off: see
`relay.web.serving.server_options`.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send


def _trusted_entry(values: Iterable[str], hops: int) -> str | None:
    """The `hops`-th entry from the right of the comma-separated entries of every header of one
    name, in order (several headers are one list, as HTTP says): the one the outermost trusted
    proxy wrote. None when nothing is trusted (`hops` 0) or the list is shorter than `hops`
    (the request did not come through them all)."""
    if hops <= 0:
        return None
    entries = [entry.strip() for value in values for entry in value.split(",")]
    return entries[-hops] if len(entries) >= hops else None


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
    X-Forwarded-For entry from the right. None when there is no such entry (`_trusted_entry`)
    or it is not an address: the caller keeps the socket's peer then."""
    entry = _trusted_entry(forwarded_for, hops)
    return None if entry is None else _address(entry)


def trusted_scheme(forwarded_proto: Iterable[str], hops: int) -> str | None:
    """The scheme the client used, from X-Forwarded-Proto by the same rule; None if unknown."""
    scheme = (_trusted_entry(forwarded_proto, hops) or "").lower()
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
            take_trusted_hop(scope, self.hops)
        await self.app(scope, receive, send)


def take_trusted_hop(scope: Scope, hops: int) -> None:
    """`scope["client"]` and `scope["scheme"]` of one HTTP request as the `hops` (> 0) trusted
    proxies saw them (`TrustedHop`; the relay's app does it in its one front layer)."""
    forwarded_for: list[str] = []
    forwarded_proto: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded_for.append(value.decode("latin-1"))
        elif name == b"x-forwarded-proto":
            forwarded_proto.append(value.decode("latin-1"))
    client = trusted_client(forwarded_for, hops)
    scheme = trusted_scheme(forwarded_proto, hops)
    if client is not None:
        scope["client"] = (client, 0)  # the port a proxy saw is not passed on
    if scheme is not None:
        scope["scheme"] = scheme

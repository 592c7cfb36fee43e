"""Image URLs a hook hands to PassKit: public `https` only, checked when the URL is minted.

PassKit fetches a pass image from the URL it is given, so a URL naming this network's own
machines (a router's admin page, a cloud's metadata service at 169.254.169.254) must never be
minted into a hook. Checked here, without the network:

- the scheme is https, with a host and no user name or password in the URL;
- a host that is an IP address (also the forms a resolver reads as one: `127.1`,
  `2130706433`, `0x7f000001`) must be a global address: not private, loopback, link-local,
  multicast, reserved or unspecified (an IPv4 address inside IPv6 is judged as IPv4);
- a name must be a public one: not `localhost`, a single label (`intranet`), nor a suffix kept
  for local networks (`.local`, `.internal`, `.home.arpa`, `.localdomain`, `.lan`).

Not checked: what a DNS name resolves to. Minting does not wait on DNS (it must not hang), and
a name can be pointed elsewhere after minting anyway; a public name that resolves to a private
address passes here, and PassKit fetches the image from its own network, not the relay's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Literal
from urllib.parse import urlsplit

LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain", ".lan")
# What inet_aton may read as an IPv4 address: digits, dots and hex (127.1, 0x7f.0.0.1).
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]*))*", re.I)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` names literally (as a resolver would read it), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_unspecified)


Fault = Literal["unreadable", "scheme", "no_host", "credentials", "private", "local"]


def public_https_fault(url: str) -> tuple[Fault, str] | None:
    """What keeps `url` from being a public https address, as far as its text shows, and its
    host; None when nothing does. The callers say it in their own words."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "unreadable", ""
    if parts.scheme.lower() != "https":
        return "scheme", host
    if not host:
        return "no_host", host
    if parts.username is not None or parts.password is not None:
        return "credentials", host
    address = literal_address(host)
    if address is not None:
        return None if public_address(address) else ("private", host)
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host:
        return "local", host
    return None


_IMAGE_WORDS: dict[Fault, str] = {
    "unreadable": "is not a web address: use a public https://… address of the image",
    "scheme": "must start with https:// (PassKit fetches images over HTTPS only)",
    "no_host": "has no host name: use a public https://… address of the image",
    "credentials": "must not carry a user name or password: use a public address of the image",
    "private": "names a private or local network address: use the image's public address",
    "local": "names a machine on a local network: use the image's public address",
}


def image_url_problem(url: str) -> str | None:
    """What is wrong with `url` as a pass image's address, as the rest of a sentence
    ("is not …"); None when it is a public https URL."""
    fault = public_https_fault(url)
    return _IMAGE_WORDS[fault[0]] if fault else None

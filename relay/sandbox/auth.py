"""PassKit's REST authentication, checked sans-I/O (passkit-api.md §2).

Two credentials are accepted in the `Authorization` header:

- a short-lived HS256 JWT, **bare** (no prefix), signed with the account's API secret, whose
  `uid` is the API key, `exp` is in the future and `iat` is neither ahead of the clock (beyond
  MAX_SKEW: "Token used before issued") nor MAX_AGE seconds or more in the past (live PassKit
  refuses those, whatever their `exp`, with "jwt was issued too long ago");
- `Bearer <long-lived token>`, compared in constant time.

`Bearer <jwt>` is also accepted. The reference leaves it UNCONFIRMED but reports third-party
clients sending it successfully, so refusing it would make the sandbox stricter than the thing
it fakes; the relay itself sends the bare form (its tests check that).

Failures are UNAUTHENTICATED with messages in the style of PassKit's Go gateway
(`no jwt token provided`, `illegal base64 data at input byte 6`, `token is expired`, …), and
PassKit's own `jwt was issued too long ago`.
`sign()` sits next to `verify_jwt()` so the app can hand back a refreshed token in
`X-Passkit-Token`, as PassKit does on each authenticated call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from typing import Any

from relay.sandbox.errors import unauthenticated

MAX_SKEW = 5  # seconds an `iat` may be ahead of our clock
MAX_AGE = 60  # seconds after its `iat` a token is refused (measured against live PassKit)
LIFETIME = 3600
_B64URL = frozenset(string.ascii_letters + string.digits + "-_")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(segment: str) -> bytes:
    for index, char in enumerate(segment):
        if char not in _B64URL:
            raise unauthenticated(f"illegal base64 data at input byte {index}")
    if len(segment) % 4 == 1:
        raise unauthenticated(f"illegal base64 data at input byte {len(segment) - 1}")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_decode(segment))
    except ValueError:
        raise unauthenticated(f"token {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise unauthenticated(f"token {what} is not a JSON object")
    return value


def _signature(secret: str, signing_input: str) -> bytes:
    return hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()


def sign(key: str, secret: str, now: int, lifetime: int = LIFETIME) -> str:
    """A JWT with PassKit's claims, as PassKit's own generators make it."""
    header = _encode(b'{"alg":"HS256","typ":"JWT"}')
    claims = json.dumps({"uid": key, "iat": now, "exp": now + lifetime}, separators=(",", ":"))
    signing_input = f"{header}.{_encode(claims.encode())}"
    return f"{signing_input}.{_encode(_signature(secret, signing_input))}"


def verify_jwt(token: str, key: str, secret: str, now: float) -> dict[str, Any]:
    """The claims of a valid token, else UNAUTHENTICATED. Signature before claims, like
    golang-jwt: an attacker learns nothing about the claims of a forged token."""
    parts = token.split(".")
    if len(parts) != 3:
        raise unauthenticated("token contains an invalid number of segments")
    header = _json(parts[0], "header")
    if header.get("alg") != "HS256":
        raise unauthenticated(f"unexpected signing method: {header.get('alg')}")
    expected = _signature(secret, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(_decode(parts[2]), expected):
        raise unauthenticated("signature is invalid")
    claims = _json(parts[1], "claims")
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise unauthenticated("token has no valid exp claim")
    if now >= exp:
        raise unauthenticated("token is expired")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or iat > now + MAX_SKEW:
        raise unauthenticated("Token used before issued")
    if now - iat >= MAX_AGE:
        raise unauthenticated("jwt was issued too long ago")
    if not isinstance(claims.get("uid"), str) or not hmac.compare_digest(
        claims["uid"].encode(), key.encode()
    ):
        raise unauthenticated("invalid uid: no API key matches this token")
    return claims


def authenticate(
    header: str | None,
    *,
    key: str,
    secret: str,
    long_lived_token: str | None,
    now: float,
) -> str | None:
    """Check an Authorization header. Returns a refreshed JWT for a JWT caller (for
    `X-Passkit-Token`), None for a long-lived token; raises UNAUTHENTICATED otherwise."""
    value = (header or "").strip()
    if not value:
        raise unauthenticated("no jwt token provided")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        rest = rest.strip()
        if long_lived_token and hmac.compare_digest(rest.encode(), long_lived_token.encode()):
            return None
        if rest.count(".") != 2:
            raise unauthenticated("invalid long-lived token")
        value = rest
    verify_jwt(value, key, secret, now)
    return sign(key, secret, int(now))

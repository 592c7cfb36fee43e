"""PassKit's webhook signature: `verify()` what PassKit sends, `sign()` it the same way.

PassKit's help article "How to validate a webhook" says the `x-passkit-signature` header holds
two parts, a nonce and an HMAC-SHA256 signature "generated from the nonce value and the JSON
payload" with the webhook's signing secret; its Java sample splits the header on `,` and drops
the first part's two-character prefix (`t=`) to get the nonce. It does not pin the rest, so
`verify` accepts each unambiguous reading (see README "PassKit events out to Zapier and Make"):

- signed text: nonce + payload, or nonce + "." + payload (the raw body, never re-serialised);
- signature: hex (any case) or base64 (standard or URL-safe, padded or not), with or without a
  `v1=`-style prefix;
- key: the secret's text as UTF-8 (what the Java sample's `StandardCharsets` suggests), or the
  bytes it decodes to when it is base64 (third parties report secrets that look like it).

`sign` (the sandbox and the tests) writes `t=<unix seconds>,v1=<hex of HMAC(nonce "." body)>`.
A nonce that reads as a Unix time (seconds or milliseconds, `nonce_time`: also once its
separators are stripped, so moving the "." of the signed text into the nonce does not undate
it) must lie within TOLERANCE of now, so a captured request cannot be replayed later. Whatever
the nonce, relay.web.event_endpoint remembers each signature it accepted: the same signature
again is a replay, answered 200 and not forwarded. Fails closed: every problem is
InvalidPassKitSignature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Sequence

from relay.errors import RelayError

HEADER = "x-passkit-signature"
TOLERANCE = 300.0  # seconds a dated nonce may be off from now, either way (as Stripe's)
_HINT = (
    "Copy the webhook's signing secret from PassKit (open the webhook under Integrations › "
    "Webhooks) into PASSKIT_WEBHOOK_SECRET; it changes whenever the webhook is edited, and "
    "several secrets go comma-separated."
)


class InvalidPassKitSignature(RelayError):
    status = 401
    code = "invalid_signature"
    default_hint = _HINT


def sign(payload: bytes, secret: str, nonce: str | None = None) -> str:
    """The `x-passkit-signature` value for `payload`: `t=<nonce>,v1=<hex HMAC-SHA256>`."""
    nonce = str(int(time.time())) if nonce is None else nonce
    digest = hmac.new(secret.encode(), nonce.encode() + b"." + payload, hashlib.sha256)
    return f"t={nonce},v1={digest.hexdigest()}"


def parse_header(header: str) -> tuple[str, bytes]:
    """The nonce and the signature's bytes; InvalidPassKitSignature if it cannot be read."""
    parts = [part.strip() for part in header.split(",")]
    if len(parts) != 2 or len(parts[0]) <= 2 or not parts[1]:
        raise InvalidPassKitSignature(
            "The x-passkit-signature header is not a nonce and a signature separated by a comma."
        )
    nonce = parts[0][2:]  # as PassKit's sample: the first part minus its two-character prefix
    signature = _decode(parts[1].partition("=")[2] if _prefixed(parts[1]) else parts[1])
    if signature is None:
        raise InvalidPassKitSignature(
            "The signature in x-passkit-signature is neither hex nor base64 of 32 bytes."
        )
    return nonce, signature


def _prefixed(part: str) -> bool:
    """`v1=…` rather than base64 (whose only `=` are its padding at the end)."""
    name, sep, _ = part.partition("=")
    return bool(sep) and 0 < len(name) <= 3 and name.isalnum()


def _decode(text: str) -> bytes | None:
    """A SHA-256 digest written in hex or base64; None when it is neither."""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    padded = (text + "=" * (-len(text) % 4)).encode("ascii", "replace")
    for alphabet in (b"+/", b"-_"):  # standard or URL-safe
        try:
            raw = base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


def _keys(secret: str) -> Iterator[bytes]:
    yield secret.encode()
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return
    if len(decoded) >= 16:
        yield decoded


# Characters that separate the parts of a signed text: stripped before a nonce is read as a time.
_SEPARATORS = re.compile(r"[\s.,:;_/|-]")
# A time followed by a separator and anything: what a nonce looks like once the separator of
# the "nonce + '.' + payload" reading is moved into it (`t=<old>.`, or with some of the body).
_LEADING_TIME = re.compile(r"[\s.,:;_/|-]*(\d{13}|\d{10})[\s.,:;_/|-]")


def nonce_time(nonce: str) -> float | None:
    """The Unix time a nonce carries (seconds or milliseconds), None when it carries none: all
    digits once separators are stripped (`1700000000`, `1700000000.`, `17-000-00000`), or a
    time and a separator before anything else (`1700000000.{"event"…`). A nonce of letters and
    digits (hex, a UUID) is not read as a time, so a real event is never refused for its look."""
    stripped = _SEPARATORS.sub("", nonce)
    if stripped.isdigit() and len(stripped) in (10, 13):
        digits = stripped
    elif found := _LEADING_TIME.match(nonce):
        digits = found.group(1)
    else:
        return None
    return float(digits) if len(digits) == 10 else int(digits) / 1000


def verify(
    payload: bytes, header: str | None, secrets: Sequence[str], *, now: float | None = None
) -> str:
    """The nonce of a delivery whose signature checks out against one of `secrets`."""
    if not header:
        raise InvalidPassKitSignature(
            "The request has no x-passkit-signature header: it did not come from PassKit."
        )
    nonce, signature = parse_header(header)
    matched = any(
        hmac.compare_digest(hmac.new(key, text, hashlib.sha256).digest(), signature)
        for secret in secrets
        for key in _keys(secret)
        for text in (nonce.encode() + b"." + payload, nonce.encode() + payload)
    )
    if not matched:
        raise InvalidPassKitSignature(
            "The x-passkit-signature does not match the body for any PASSKIT_WEBHOOK_SECRET: "
            "a wrong or old secret (it changes when the webhook is edited) or a changed body."
        )
    dated = nonce_time(nonce)
    now = time.time() if now is None else now
    if dated is not None and abs(now - dated) > TOLERANCE:
        raise InvalidPassKitSignature(
            f"The event was signed {abs(now - dated) / 60:.0f} minutes from this server's "
            "time: a replayed request, or this server's clock is wrong (check NTP)."
        )
    return nonce

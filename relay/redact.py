"""Redaction of what goes into the delivery log: the log is for debugging, never for secrets.

Two nets, because a secret can hide under an innocent key or an innocent-looking one:

- by key: any key whose name mentions a credential (`Authorization`, `api_key`, `client_secret`,
  `Stripe-Signature`, `password`…) has its whole value masked, however deeply nested;
- by shape: any string value containing something that looks like a credential (a JWT or relay
  token `eyJ….…`, `Bearer …`, Stripe `sk_live_…`/`sk_test_…`/`rk_…`/`whsec_…`) has that part
  masked, so a secret pasted into a free-text field is caught too.

Every string is also made fit to store: a lone UTF-16 surrogate (from a JSON escape) becomes
U+FFFD, so a log write can never fail on text PassKit already accepted.

`store_payloads=False` (a privacy setting) keeps no payload at all: the log then holds only the
delivery's metadata (time, hook, outcome, status, latency, error code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from relay.brokentext import BROKEN, mend_text

MASK = "[redacted]"

# Compared against the key lower-cased with "-" and spaces read as "_".
_SECRET_KEY_PARTS = (
    "authorization",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "jwt",
    "cookie",
    "signature",
    "private_key",
    "credential",
)
_SECRET_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)?"  # JWTs and relay hook tokens
    r"|(?<![A-Za-z0-9_\-])\.eJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?"  # zipped
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9+/=]+"  # Stripe webhook signing secrets
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]+"  # any bearer token
)


REMEMBERED = 4096
V = TypeVar("V")


def remember(memo: dict[str, V], name: str, answer: V) -> V:
    """`answer` for a field name, kept in `memo` when the name is short. Field names repeat from
    delivery to delivery, so a walk asks a dict (`memo.get(name)`), not a function, for each
    key; long names, which only a sender's oddity makes, are not kept, and a memo holding
    REMEMBERED names starts again, so it stays small whatever senders send."""
    if len(name) <= 64:
        if len(memo) >= REMEMBERED:
            memo.clear()
        memo[name] = answer
    return answer


SECRET_KEYS: dict[str, bool] = {}  # secret_key's answers (see remember)


def secret_key(name: str) -> bool:
    """True when a field called `name` holds a credential by its name alone."""
    secret = SECRET_KEYS.get(name)
    if secret is None:
        normal = name.strip().lower().replace("-", "_").replace(" ", "_")
        secret = remember(SECRET_KEYS, name, any(part in normal for part in _SECRET_KEY_PARTS))
    return secret


def redact_text(text: str) -> str:
    """`text` with anything shaped like a secret masked, and fit to store (no lone surrogates)."""
    if plainly_clean(text):
        return text
    return mend_text(_SECRET_SHAPES.sub(MASK, text))


def plainly_clean(text: str) -> bool:
    """True for text holding no broken character and none of the pieces every secret shape
    must hold: `eyJ`, `.eJ`, `k_live_` or `k_test_` (Stripe's sk_/rk_ keys), `whsec_`, `bearer`
    in any case (no character but ASCII's own capitals folds to those letters). Most values
    are such (names, emails, ids, the access log's line with its "…" and its hook id `hk_…`):
    they skip the secret shapes' expression."""
    if text.isascii():
        if "\x00" in text:
            return False
    elif BROKEN.search(text):
        return False
    return (
        "eyJ" not in text
        and ".eJ" not in text
        and "k_live_" not in text
        and "k_test_" not in text
        and "whsec_" not in text
        and "earer" not in text.lower()
    )


def mask_private(text: str, private: Sequence[str]) -> str:
    """`text` with each of the `private` quotes in it masked, then `redact_text`."""
    for quote in sorted(filter(None, private), key=len, reverse=True):
        text = text.replace(quote, MASK)
    return redact_text(text)


def redact(value: Any, *, store_payloads: bool = True) -> Any:
    """A copy of the JSON value `value` with every credential masked (None: keep nothing)."""
    if not store_payloads:
        return None
    return _redact(value, None)


Finder = Callable[[Any, Any], None]


def redact_finding(value: Any, find: Finder) -> Any:
    """`redact(value)`, showing `find` on the way each (key, item) of every object whose item
    is text or is masked whole (the objects and lists under other keys it is shown the keys
    of): a walk that also finds what it needs (relay.store.personal.logged) walks once."""
    return _redact(value, find)


def _redact(value: Any, find: Finder | None) -> Any:
    # Text and numbers first: most values are, and the Mapping test is an ABC's slow check.
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        redacted = {}
        for key, item in value.items():
            secret = SECRET_KEYS.get(key)  # a look-up, not a call: see SECRET_KEYS
            if secret is None:
                secret = isinstance(key, str) and secret_key(key)
            if isinstance(item, str):  # here, not through another call: most values are text
                if find is not None:
                    find(key, item)
                if secret and item:
                    redacted[key] = MASK
                else:
                    redacted[key] = item if plainly_clean(item) else redact_text(item)
            elif secret and item:
                if find is not None:
                    find(key, item)
                redacted[key] = MASK
            else:
                redacted[key] = _redact(item, find)
        return redacted
    if isinstance(value, list | tuple):
        return [_redact(item, find) for item in value]
    return value

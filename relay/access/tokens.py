"""Hook tokens: the signed, URL-safe payload at the end of every hook URL.

The token *is* the hook's configuration (id, template, params), so a hook URL keeps working even
if the database is lost; the database only adds revocation and statistics. Params are signed, not
encrypted: they are readable by whoever holds the URL and must never hold secrets.

Key rotation: `RELAY_SECRET_KEY=new,old` signs with the first key and verifies with all of them.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from relay.errors import InvalidToken

SALT = "passkit-relay.hook.v1"
VERIFIED_CACHE = 1024
# Hooks minted from now on carry `v=2` among their params (signed like them, stored in the
# hooks table like them): what a URL does only changes for URLs minted after the change, and a
# URL without it (every URL minted before) keeps behaving exactly as it did. See
# docs/truthful-answers.md.
VERSION_PARAM = "v"
CURRENT_VERSION = 2
_TOKEN_IN_URL = re.compile(r"/(?:hooks|stripe|passkit)/([A-Za-z0-9_\-.]+)/?(?:[?#].*)?$")


@dataclass(frozen=True)
class Hook:
    id: str
    template: str
    params: Mapping[str, str] = field(default_factory=dict)

    @functools.cached_property  # read several times a delivery; a verified Hook is shared
    def version(self) -> int:
        """2 for hooks minted with the truthful answers (relay 2026-12), 1 for older URLs."""
        value = str(self.params.get(VERSION_PARAM, ""))
        return int(value) if value.isdigit() else 1


def new_hook_id() -> str:
    return "hk_" + secrets.token_hex(5)


class HookSigner:
    """Mints and verifies hook tokens with one or more secret keys (first key signs)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed to sign hook tokens")
        # itsdangerous signs with the *last* key of the list; our contract says the first.
        self._serializer = URLSafeSerializer(list(reversed(keys)), salt=SALT)
        # A zap posts to the same URL again and again: remember tokens already verified (only
        # good ones, so forged tokens cannot fill it) instead of checking the HMAC each time.
        self._verified: OrderedDict[str, Hook] = OrderedDict()

    def mint(self, hook: Hook) -> str:
        data: dict[str, Any] = {"i": hook.id, "t": hook.template}
        if hook.params:
            # A-Z, as the registry keeps them: the same hook always signs to the same URL, so
            # the console can show a hook's URL again, however its params were typed.
            data["p"] = dict(sorted(hook.params.items()))
        token = self._serializer.dumps(data)
        assert isinstance(token, str)
        return token

    def verify(self, token: str) -> Hook:
        """The hook a token names; InvalidToken if it was cut, changed or signed elsewhere."""
        token = token.strip()
        hook = self._verified.get(token)
        if hook is None:
            hook = self._verify(token)
            self._verified[token] = hook
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        return hook

    def _verify(self, token: str) -> Hook:
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            raise InvalidToken(
                "The hook URL is not valid: it was cut short, changed, or minted by another relay."
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("i"), str):
            raise InvalidToken("The hook URL is not valid: its token holds no hook.")
        params = MappingProxyType(dict(data.get("p") or {}))  # shared between requests: frozen
        return Hook(id=data["i"], template=str(data.get("t", "")), params=params)


def token_from_url(url_or_token: str) -> str:
    """The token inside a pasted hook URL (or the text itself when it is already a token)."""
    match = _TOKEN_IN_URL.search(url_or_token.strip())
    return match.group(1) if match else url_or_token.strip()


def redact_token(token: str) -> str:
    """Enough of a token to recognise it in a log line, never enough to use it."""
    return token[:6] + "…" + token[-4:] if len(token) > 12 else "…"


def hook_url(base_url: str, token: str, *, kind: str = "hooks") -> str:
    return f"{base_url.rstrip('/')}/{kind}/{token}"

"""Personal data at rest: what the relay stores about a person is sealed (Fernet: AES-128-CBC
with an HMAC-SHA256, from `cryptography`) and found again by a blind index, never read in clear.

Keys: `RELAY_ENCRYPTION_KEY` (Fernet keys, comma-separated), else one derived (HKDF-SHA256) from
each `RELAY_SECRET_KEY`. The first key seals; every key opens, so a key is rotated by putting
the new one first, re-sealing (`relay reencrypt`), then dropping the old one.

`blind(text)` is an HMAC of a normalised identifier (an email, an external id, a Stripe customer
id) under a key derived from the first secret: a column a row can be looked up by (to erase a
person) that tells nothing about the person to someone holding the database alone.
`blinds(text)` gives it under every key, for look-ups across a rotation.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:"  # marks a sealed value, so rows written before sealing still read


class SealError(Exception):
    """A sealed value no key opens (its key was dropped, or the value was altered)."""


def normalised(identifier: str) -> str:
    """An identifier as the blind index sees it: spaces collapsed, case folded."""
    return " ".join(identifier.split()).casefold()


def derived_key(secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for `purpose`, derived from a secret key (never the secret itself)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode()
    )


def fernet_key_from(secret: str) -> bytes:
    return base64.urlsafe_b64encode(derived_key(secret, b"passkit-relay: sealing"))


class Sealer:
    """Seals and opens text and JSON values; the first key seals, every key opens."""

    def __init__(self, fernet_keys: Sequence[bytes], index_keys: Sequence[bytes]) -> None:
        if not fernet_keys or not index_keys:
            raise ValueError("a Sealer needs at least one key of each kind")
        self._fernet = MultiFernet([Fernet(key) for key in fernet_keys])
        self._first = Fernet(fernet_keys[0])
        self._index_keys = list(index_keys)

    @classmethod
    def from_secrets(
        cls, secret_keys: Sequence[str], encryption_keys: Sequence[str] = ()
    ) -> Sealer:
        """Keys as the settings give them: RELAY_ENCRYPTION_KEY's Fernet keys when set, else
        keys derived from RELAY_SECRET_KEY's; the blind index is always keyed from the
        secret keys."""
        fernet = [k.encode() for k in encryption_keys] or [fernet_key_from(s) for s in secret_keys]
        # Without secret keys (a command run with RELAY_ENCRYPTION_KEY alone) the index is
        # keyed from the encryption keys, which are secret too.
        index = [derived_key(s, b"passkit-relay: blind index")
                 for s in (secret_keys or encryption_keys)]  # fmt: skip
        return cls(fernet, index)

    @staticmethod
    def valid_key(key: str) -> bool:
        """True when `key` is a Fernet key (32 bytes, URL-safe base64), as Fernet.generate_key
        makes them."""
        try:
            Fernet(key.encode())
        except ValueError:
            return False
        return True

    def seal(self, text: str) -> str:
        return PREFIX + self._fernet.encrypt(text.encode()).decode()

    def open(self, stored: str) -> str:
        """The text `stored` holds; a value stored before sealing is returned as it is."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealError("no key opens this value (was its key removed?)") from None

    def seal_bytes(self, data: bytes) -> str:
        """Bytes sealed as text (an uploaded file's part): Fernet's token is text already."""
        return PREFIX + self._fernet.encrypt(data).decode()

    def open_bytes(self, stored: str) -> bytes:
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode())
        except InvalidToken:
            raise SealError("no key opens this value (was its key removed?)") from None

    def reseal(self, stored: str) -> str:
        """`stored` sealed under the first key (done by `relay reencrypt` after a rotation)."""
        return self.seal(self.open(stored))

    def sealed_with_first_key(self, stored: str) -> bool:
        if not stored.startswith(PREFIX):
            return False
        try:
            self._first.decrypt(stored[len(PREFIX) :].encode())
        except InvalidToken:
            return False
        return True

    def blind(self, identifier: str) -> str:
        """The blind index of an identifier under the current key."""
        return self.blinds(identifier)[0]

    def blinds(self, identifier: str) -> list[str]:
        """Its blind index under every key (the first is the current one)."""
        text = normalised(identifier).encode()
        # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(…).digest() without
        # building an HMAC object (~0.5 µs of ~2, five times a delivery).
        return [hmac.digest(key, text, "sha256").hex()[:32] for key in self._index_keys]

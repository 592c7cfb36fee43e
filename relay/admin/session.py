"""Admin sign-in: the password check, the session cookie, CSRF tokens and the login limiter.

- The session is an itsdangerous-signed cookie (HttpOnly, SameSite=Lax, Secure over https)
  holding a random session id and CSRF token; it expires after `MAX_AGE`. The signing key mixes
  the relay's secret with a hash of the admin password, so changing the password signs everyone
  out.
- Signing out records the session id as ended in the store (`Store.end_admin_session`), which
  every admin request checks: a copy of the cookie dies with the sign-out, in every process.
  A cookie without a session id (signed before ids existed) is no session.
- Every form carries the session's CSRF token; a POST without the right one is refused (403).
  The login form, which has no session yet, uses a short-lived signed token of its own.
- Sign-in attempts are limited per client address (`LoginLimiter`), counted in the store
  before the password is checked, so the password cannot be guessed at network speed, however
  many guesses arrive at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from relay.settings import ADMIN_SESSION_MAX_AGE
from relay.store import Store

COOKIE = "relay_admin"
MAX_AGE = ADMIN_SESSION_MAX_AGE
LOGIN_FORM_MAX_AGE = 3600


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str


class SessionSigner:
    def __init__(self, secret_key: str, password: str) -> None:
        digest = hashlib.sha256(password.encode()).hexdigest()
        self._password = password
        self._serializer = URLSafeTimedSerializer(
            secret_key + digest, salt="passkit-relay.admin.session"
        )
        self._login = URLSafeTimedSerializer(secret_key, salt="passkit-relay.admin.login")

    def password_matches(self, given: str) -> bool:
        # Compare digests so the time taken says nothing about the password's length.
        want = hashlib.sha256(self._password.encode()).digest()
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), want)

    def new_session(self) -> tuple[Session, str]:
        session = Session(id=secrets.token_urlsafe(24), csrf=secrets.token_urlsafe(24))
        return session, str(self._serializer.dumps({"sid": session.id, "csrf": session.csrf}))

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        sid, csrf = data.get("sid"), data.get("csrf")
        if not (isinstance(sid, str) and sid and isinstance(csrf, str) and csrf):
            return None  # e.g. a cookie from before session ids: signed out
        return Session(id=sid, csrf=csrf)

    def login_token(self) -> str:
        return str(self._login.dumps(secrets.token_urlsafe(8)))

    def login_token_ok(self, token: str) -> bool:
        try:
            self._login.loads(token, max_age=LOGIN_FORM_MAX_AGE)
        except BadSignature:
            return False
        return True


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


@dataclass
class LoginLimiter:
    """At most `attempts` sign-in attempts per `window` seconds from one address, counted in the
    store before the password is checked: concurrent guesses share one budget, in every process
    on the database. Once the budget is spent, even the right password waits for the window."""

    attempts: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.time

    async def attempt(self, store: Store, address: str) -> float:
        """Count one attempt from `address`; the seconds it must wait (0: check its password)."""
        now = self.clock()
        count, started = await store.count_login_attempt(address, now, self.window)
        if count <= self.attempts:
            return 0.0
        return max(1.0, started + self.window - now)

    async def succeeded(self, store: Store, address: str) -> None:
        await store.forget_login_attempts(address)

"""The PassKit REST client: authentication, retries, and PassKit's answers turned into errors.

The HTTP library sits behind `relay.passkit.upstream` (send bytes, get status, headers and bytes),
so it can be swapped: production uses a pooled aiohttp session (the fastest in the benchmark);
when the app factory is given an httpx transport (tests: `httpx.MockTransport` over respx) it
uses httpx over that transport instead.

Retries: 429, 5xx and connection failures (including a pooled keep-alive connection the server
closed) are retried with exponential backoff and full jitter, honouring `Retry-After`, inside a
total budget well under Zapier's 30 s. A read timeout is not retried: the call may have been
carried out, and the caller's idempotency key or create protection decides what happens next.

Tokens: live PassKit refuses a JWT whose `iat` is 60 s or more in the past ("jwt was issued too
long ago") and one whose `iat` is ahead of its clock ("Token used before issued"), so every
attempt carries a fresh JWT dated a few seconds back: minted for it, or minted for another call
less than `JWT_REUSE` seconds before (an HMAC and a JSON dump saved per call; its `iat` is then
at most 25 s old, far from PassKit's 60). A 401 about the token's age or
expiry is answered by minting anew and trying once more; any other 401 (wrong key or secret)
is PassKit's final word.

Rate: every attempt, list reads included, first takes a turn from `relay.passkit.outbound` (at most
PASSKIT_RATE_LIMIT calls a second, shared through the database by every process), waiting no
longer than its budget allows; a 429's Retry-After pauses every process's calls, not only this
one's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from relay import __version__
from relay.brokentext import BROKEN_ESCAPE, mend
from relay.errors import (
    PassKitAuth,
    PassKitBusy,
    PassKitConflict,
    PassKitError,
    PassKitNotFound,
    PassKitRejected,
    PassKitTimeout,
    PassKitUnavailable,
)
from relay.jsontext import compact
from relay.passkit.operations import Operation, PassKitRequest
from relay.passkit.outbound import OutboundLimiter
from relay.passkit.upstream import (
    AiohttpUpstream,
    HttpxUpstream,
    Upstream,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from relay.settings import Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
JWT_LIFETIME = 3600  # what PassKit's generators write by default (mint_jwt's default)
# A token per request: `iat` this far back, so a PassKit clock a little behind ours never sees
# a token "used before issued"; `exp` shortly after, as PassKit's jwt.sh does (60 s), since
# PassKit refuses any token issued 60 s or more ago whatever its `exp`.
JWT_BACKDATE = 10
JWT_REQUEST_LIFETIME = 70  # exp = iat + 70 = now + 60
JWT_REUSE = 15  # a token minted less than this many seconds ago still counts as fresh
# PassKit's words for a token refused for its age or dates rather than its key or signature
# ("jwt was issued too long ago", "token is expired", "Token used before issued", …).
STALE_TOKEN = re.compile(
    r"too long ago|expired|before issued|not valid yet|in the future|\b(iat|exp|nbf)\b",
    re.IGNORECASE,
)
BACKOFF_FIRST = 0.25  # PassKit: "Back off for 250ms and repeat request until successful."
BACKOFF_CAP = 4.0
LIST_LIMIT = 4 * 1024 * 1024  # bytes of one list answer (server-streamed) read at most
# Waiting for a turn at PassKit's rate stops this long before the budget ends, so the call
# itself (and a create's one lookup after a failure, at most 5 s) still fits under Zapier's 30 s.
TURN_MARGIN = 5.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(key: str, secret: str, now: int, lifetime: int = JWT_LIFETIME) -> str:
    """An HS256 JWT with PassKit's claims (`uid`, `iat`, `exp`), as PassKit's own scripts do."""
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = json.dumps({"uid": key, "iat": now, "exp": now + lifetime}, separators=(",", ":"))
    signing_input = f"{header}.{_b64(claims.encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class Credentials:
    """Produces the Authorization header: a bare JWT minted less than `JWT_REUSE` seconds ago
    (or afresh when `fresh`: after PassKit refused one for its age), or `Bearer <long-lived
    token>`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._minted: tuple[float, str] | None = None  # when, and the token

    @property
    def mints(self) -> bool:
        """True when the header is a JWT minted here (worth minting again after a 401)."""
        settings = self._settings
        return not settings.passkit_token and bool(
            settings.passkit_api_key and settings.passkit_api_secret
        )

    def header(self, *, fresh: bool = False) -> str | None:
        settings = self._settings
        if settings.passkit_token:
            return "Bearer " + settings.passkit_token.reveal()
        if not (settings.passkit_api_key and settings.passkit_api_secret):
            return None
        now = self._clock()
        if not fresh and self._minted and 0 <= now - self._minted[0] < JWT_REUSE:
            return self._minted[1]
        token = mint_jwt(
            settings.passkit_api_key,
            settings.passkit_api_secret.reveal(),
            int(now) - JWT_BACKDATE,
            JWT_REQUEST_LIFETIME,
        )
        self._minted = (now, token)
        return token


def is_stale_token(status: int, body: Any) -> bool:
    """A 401 about the token's age or dates: a freshly minted token may well be accepted."""
    return status == 401 and bool(STALE_TOKEN.search(passkit_message(body)))


@dataclass(frozen=True)
class PassKitAnswer:
    status: int
    json: Any
    headers: Mapping[str, str]
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _decode(body: bytes) -> Any:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {"raw": body.decode("utf-8", "replace")[:500]}
    # A "\ud800" escape decodes to text no encoder can write: the answer, the log and the
    # next step would all fail on it.
    return mend(value) if BROKEN_ESCAPE.search(body) else value


def passkit_message(body: Any) -> str:
    """PassKit's own error text from either error shape: {code,message} or {"error":{…}}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("raw"):
            return str(body["raw"])
    return "no message"


class PassKitClient:
    """One pooled connection to PassKit per app; `send` retries within the budget."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        limiter: OutboundLimiter | None = None,
    ) -> None:
        """Without `limiter`, this client keeps to PASSKIT_RATE_LIMIT on its own (in memory);
        the app passes one whose turns are shared through its database."""
        self.settings = settings
        self.limiter = limiter or OutboundLimiter(
            settings.passkit_rate_limit, clock=clock, sleep=sleep
        )
        self.credentials = Credentials(settings, wall_clock)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._jitter = jitter
        headers = {"Accept": "application/json", "User-Agent": f"passkit-relay/{__version__}"}
        self._upstream: Upstream = (
            HttpxUpstream(settings.passkit_api_url, headers, transport)
            if transport is not None
            else AiohttpUpstream(settings.passkit_api_url, headers)
        )

    async def aclose(self) -> None:
        await self._upstream.aclose()

    def pass_url(self, pass_id: str) -> str:
        return f"{self.settings.passkit_pass_url}/{pass_id}"

    def _backoff(self, attempt: int) -> float:
        return self._jitter() * min(BACKOFF_CAP, BACKOFF_FIRST * 2.0**attempt)

    async def send(self, request: PassKitRequest) -> PassKitAnswer:
        """Send once, retrying transient failures; the final answer is returned whatever its
        status (see `raise_for_answer`), transport failures raise PassKit errors."""
        deadline = self._clock() + self.settings.retry_budget
        headers = {}
        body = None
        if request.json is not None:
            body = compact(request.json)
            headers["Content-Type"] = "application/json"
        attempt = 0
        reminted = False  # a token refused for its age is minted anew once per call
        failure = ""  # why the last attempt is being retried
        margin = min(TURN_MARGIN, self.settings.retry_budget / 4)
        while True:
            try:
                await self.limiter.acquire(deadline - margin - self._clock())
            except PassKitBusy as busy:
                if attempt == 0:
                    raise  # nothing sent
                raise PassKitUnavailable(
                    f"PassKit is unavailable: {failure}, and no turn at PassKit's rate was "
                    f"free for another try after {attempt} attempts.",
                    retry_after=busy.retry_after,
                ) from busy
            auth = self.credentials.header(fresh=reminted)  # fresh: minted under 15 s ago
            if auth:
                headers["Authorization"] = auth
            remaining = max(deadline - self._clock(), 0.1)
            wait: float
            try:
                reply = await self._upstream.request(
                    request.method, request.path, body, headers,
                    timeout=min(self.settings.passkit_timeout, remaining),
                    connect_timeout=min(5.0, remaining),
                )  # fmt: skip
            except UpstreamTimeout as exc:
                raise PassKitTimeout(
                    f"PassKit did not answer the {request.operation.name} call in time."
                ) from exc
            except UpstreamUnreachable as exc:
                failure = f"could not reach PassKit ({exc})"
                wait = self._backoff(attempt)
            else:
                if reply.status not in RETRY_STATUSES:
                    answer = PassKitAnswer(reply.status, _decode(reply.body), reply.headers,
                                           attempt + 1)  # fmt: skip
                    if (
                        reminted
                        or not self.credentials.mints
                        or not is_stale_token(answer.status, answer.json)
                        or self._clock() >= deadline
                    ):
                        return answer
                    reminted = True  # refused for its age or dates: mint anew, at once
                    failure = "PassKit refused the token for its age"
                    attempt += 1
                    continue
                failure = f"PassKit answered {reply.status}"
                told = retry_after_seconds(reply.headers.get("retry-after"), self._wall_clock())
                if reply.status == 429 and told:
                    await self.limiter.pause(told)  # every process waits, not only this call
                wait = told if told is not None else self._backoff(attempt)
            attempt += 1
            if self._clock() + wait >= deadline:
                raise PassKitUnavailable(
                    f"PassKit is unavailable: {failure}, still after {attempt} attempts.",
                    retry_after=max(1.0, round(wait)),
                )
            await self._sleep(wait)

    async def list_records(
        self, method: str, path: str, message: Mapping[str, Any], *, max_bytes: int = LIST_LIMIT
    ) -> PassKitList:
        """One of PassKit's server-streamed lists (`{"result": …}` a line), read line by line
        up to `max_bytes`. Sent once (a stale token is minted anew once): the caller bounds the
        time. A connection failure raises PassKitUnavailable, no answer in time PassKitTimeout;
        any answer, an error too, is returned."""
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in range(2):
            await self.limiter.acquire(self.settings.passkit_timeout)
            auth = self.credentials.header(fresh=attempt > 0)
            if auth:
                headers["Authorization"] = auth
            try:
                reply = await self._upstream.request_lines(
                    method, path, body, headers, timeout=self.settings.passkit_timeout,
                    connect_timeout=5.0, max_bytes=max_bytes,
                )  # fmt: skip
            except UpstreamTimeout as exc:
                raise PassKitTimeout(f"PassKit did not answer {path} in time.") from exc
            except UpstreamUnreachable as exc:
                raise PassKitUnavailable(f"could not reach PassKit ({exc})") from exc
            if not 200 <= reply.status < 300:
                error = _decode(b"\n".join(reply.lines))
                if attempt == 0 and self.credentials.mints and is_stale_token(reply.status, error):
                    continue
                return PassKitList(reply.status, [], error, reply.complete)
            records: list[Any] = []
            for line in reply.lines:
                item = _decode(line)
                if isinstance(item, dict) and "error" in item:  # an error mid-stream
                    return PassKitList(500, records, item, reply.complete)
                if isinstance(item, dict) and isinstance(item.get("result"), dict):
                    records.append(item["result"])
            return PassKitList(reply.status, records, None, reply.complete)
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class PassKitList:
    """A list's answer: its records (each line's `result`), or the error body (`json`)."""

    status: int
    records: list[Any]
    json: Any
    complete: bool = True  # False: cut at the size bound

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.json is None


_SETUP_MISSING = (
    "PassKit has no program, tier, campaign, offer or event with the ids this hook sends: the "
    "operator should check the hook's params (program_id, tier_id…) or the tier field mapped."
)


def raise_for_answer(answer: PassKitAnswer, operation: Operation) -> None:
    """Turn a non-2xx PassKit answer into the relay error a Zapier/Make user can act on."""
    if not answer.ok:
        raise error_for_answer(answer, operation)


def error_for_answer(answer: PassKitAnswer, operation: Operation) -> PassKitError:
    """The relay error for a non-2xx PassKit answer, chosen by its status alone.

    PassKit's words are quoted, never read: whether a record "already exists" is not decided
    here from a message (PassKit documents no answer for a duplicate); a create's delivery looks
    the record up instead (`relay.delivery.pipeline`). A 409 stays a conflict, a 400 a rejection."""
    operation_name = operation.name
    message = passkit_message(answer.json)
    quoted = [message]  # PassKit's own words may repeat what was sent: not for the logs
    status = answer.status
    error: PassKitError
    if status in (401, 403):
        error = PassKitAuth(
            f"PassKit refused the relay's credentials ({status}: {message}).", private=quoted
        )
    elif status == 404:
        # A create names no existing pass, so its 404 is about the set-up it refers to.
        setup = operation.creates or operation.on_conflict is not None
        hint = _SETUP_MISSING if setup else None
        error = PassKitNotFound(
            f"PassKit has no such record: {message}.", hint=hint, private=quoted
        )
    elif status == 409:
        error = PassKitConflict(f"It already exists in PassKit: {message}.", private=quoted)
    elif 400 <= status < 500:
        error = PassKitRejected(
            f"PassKit rejected the {operation_name} request: {message}.", private=quoted
        )
    else:
        error = PassKitUnavailable(
            f"PassKit failed ({status}: {message}).", retry_after=30, private=quoted
        )
    return error

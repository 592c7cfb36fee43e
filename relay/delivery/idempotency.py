"""At most once: explicit idempotency keys, and create protection for billable passes.

Zapier and Make replay failed and timed-out steps, and every issued pass is billed, so:

- A delivery with an `Idempotency-Key` header or `idempotency_key` field runs once per hook;
  its successful answer is stored and replayed with `"duplicate": true`. Failures are not stored
  (the key is released), so a fixed zap replayed with the same key runs again.
- A create (enrol, coupon issue, ticket issue) is also keyed by its external id, without any
  key from the sender: when a create fails and a lookup by its external id finds the record
  this relay created (never read from PassKit's words: see `relay.delivery.pipeline`), the stored
  answer is replayed as a duplicate instead of a `conflict` error. A create whose outcome is unknown
  (PassKit timed out or answered only 5xx, or the sender hung up mid-call) is remembered as
  `ATTEMPTED`, so its replay recognises the record it may have made.
- What is stored is only what a replay answers with: the flat answer, PassKit's `result` cut to
  its ids, counts and states. No name, email or phone number is kept here; the answer is sealed
  all the same (relay.store.personal), and who it was about kept as a blind index.
- A keyed answer also keeps a SHA-256 digest of the delivery's fields (never the fields): the
  same key with other fields is a sender mapping a constant as its key, refused with
  `idempotency_key_reused` instead of answering one person's pass for another. Answers stored
  before the digest existed replay as before.

Both go through `Store.claim`, so concurrent copies of one delivery, in any process sharing the
database, wait for the first instead of racing it to PassKit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from relay.errors import RelayError
from relay.jsontext import canonical, compact_text
from relay.passkit.operations import PassKitRequest, dig
from relay.store import IDEMPOTENCY_TTL, Claim, Completion, redact
from relay.store.handle import StoreHandle
from relay.store.personal import people_in

CREATE_SCOPE = "create"
DIGEST = "fields_sha256"  # in a keyed answer's stored body: the digest of its fields
ATTEMPTED = 202  # a create's stored status when PassKit may or may not have carried it out
# The parts of PassKit's answer a replay repeats: identifiers, counts and states, never a person.
_REPLAYED_RESULT_KEY = re.compile(r"(?i)(?:id|points|status|type|number|count)$")
# Where a create's container id sits: one external id is unique per program, campaign or type.
_CONTAINERS = (("programId",), ("campaignId",), ("ticketTypeId",), ("event", "productionId"))
# Claims `once` took ahead for the delivery it runs (in that delivery's task only).
_AHEAD: ContextVar[dict[tuple[str, str], Claim] | None] = ContextVar("claims_ahead", default=None)


class KeyReused(RelayError):
    """The same idempotency key came back with different fields: not a replay."""

    status = 422
    code = "idempotency_key_reused"
    default_hint = (
        "Map idempotency_key to the id of the record that triggered the zap, not a constant "
        "(in Make: the trigger module's record id); each record needs its own key."
    )


class InProgress(RelayError):
    """The first delivery with this key is still running after we waited for it."""

    status = 503
    code = "in_progress"
    default_hint = "Zapier and Make retry a 503: the retry gets the first delivery's answer."


def fields_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the flat fields in a canonical order (names sorted): what a keyed answer
    keeps to tell a replay from another delivery under the same key."""
    flat = {
        name: list(map(str, v)) if isinstance(v, list) else str(v) for name, v in fields.items()
    }
    return hashlib.sha256(canonical(flat)).hexdigest()


def create_key(request: PassKitRequest) -> str | None:
    """`members.enrol:<programId>:<externalId>`, or None when the request has no external id."""
    body = request.json or {}
    external_id = dig(body, request.operation.external_id_in_request)
    if not isinstance(external_id, str) or not external_id:
        return None
    container = next((c for path in _CONTAINERS if isinstance(c := dig(body, path), str)), "")
    return f"{request.operation.name}:{container}:{external_id}"


class OnceGuard:
    """Claims keys in the store, waiting out concurrent holders of the same key."""

    def __init__(
        self,
        store: StoreHandle,
        *,
        ttl: float = IDEMPOTENCY_TTL,
        wait: float = 25.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.wait = wait  # just under Zapier's 30 s: long enough for a retrying first delivery
        self.clock = clock

    async def claim(self, scope: str, key: str) -> Claim:
        """A `won` or `done` claim; raises InProgress when the holder never finished.

        The store keeps a digest of the key, never the key: keys hold external ids (an email,
        a phone number) and whatever a sender maps, and a digest has a fixed length. A create
        key's external id is kept as a blind index, so `relay erase` finds the row. A claim
        `once` took ahead for this delivery (its `ahead`) is handed over instead."""
        taken = _AHEAD.get()
        if taken is not None and (claim := taken.pop((scope, key), None)) is not None:
            return await self._settle(claim)
        [claim] = await self._claim_now([(scope, key)])
        return await self._settle(claim)

    async def _claim_now(self, keys: Sequence[tuple[str, str]]) -> list[Claim]:
        """Each (scope, key) claimed as it stands, in one trip to the store: won, done or busy."""
        stored = [(scope, *_stored_key(scope, key)) for scope, key in keys]
        store = await self.store.get()
        return await store.claims(stored, self.clock(), ttl=self.ttl)

    async def _settle(self, claim: Claim) -> Claim:
        """A busy claim waited for until won or done; InProgress when its holder never ends."""
        if claim.busy:
            store = await self.store.get()
            claim = await store.wait_for(
                claim.scope, claim.key, timeout=self.wait, ttl=self.ttl, clock=self.clock
            )
        if claim.busy:
            raise InProgress(
                "A delivery with this idempotency key is still running.", retry_after=5
            )
        return claim

    async def take_over(self, scope: str, key: str) -> Claim:
        """Claim `key` from a holder known to be dead (a crashed import's rows in flight), with
        no wait for the claim to go stale; stored as `claim` stores it."""
        digest, people = _stored_key(scope, key)
        store = await self.store.get()
        return await store.claim(scope, digest, self.clock(), ttl=self.ttl, stale_after=0,
                                 people=people)  # fmt: skip

    async def release(self, claim: Claim) -> None:
        # Shielded: a caller cancelled mid-failure must still free the key for the retry.
        store = await self.store.get()
        await asyncio.shield(store.release(claim))

    async def once(
        self,
        scope: str,
        key: str,
        run: Callable[[], Awaitable[dict[str, Any]]],
        *,
        digest: str | None = None,
        defer: list[Completion] | None = None,
        ahead: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """The answer of `run()` the first time; its stored copy, marked duplicate, after.
        With `digest` (of the delivery's fields), a stored answer for other fields raises
        KeyReused: nothing runs, nothing is replayed. With `defer`, the stored copy is appended
        there for the caller to write with the delivery's log entry (`Store.record_delivery`),
        before it answers; concurrent copies wait for it as they wait for a running one.
        With `ahead` (scope, key), that key is claimed in the same trip, for `run` to find
        through `claim` (the create key of a delivery already rendered): released if unused."""
        claim, *early = await self._claim_now([(scope, key), *([ahead] if ahead else [])])
        taken: dict[tuple[str, str], Claim] = {}
        if ahead and early:
            if claim.won:
                taken[ahead] = early[0]  # waited for, if busy, when the delivery claims it
            elif early[0].won:
                # Never held while waiting on another holder: two copies of one delivery that
                # each won one of the two keys would wait for each other until both gave up.
                await self.release(early[0])
        claim = await self._settle(claim)
        handed = _AHEAD.set(taken)
        try:
            return await self._once(claim, run, digest=digest, defer=defer)
        finally:
            _AHEAD.reset(handed)
            for unused in taken.values():  # the delivery never came to claim it
                if unused.won:
                    await self.release(unused)

    async def _once(
        self,
        claim: Claim,
        run: Callable[[], Awaitable[dict[str, Any]]],
        *,
        digest: str | None,
        defer: list[Completion] | None,
    ) -> dict[str, Any]:
        if claim.done:
            answer = replayed(claim)
            if digest and answer.pop(DIGEST, digest) != digest:  # none stored: kept before
                raise KeyReused(
                    "This idempotency key was already used by a delivery with different "
                    "fields; nothing was sent to PassKit.",
                    field="idempotency_key",
                )
            answer.pop(DIGEST, None)
            return answer
        try:
            answer = await run()
        except BaseException:
            await self.release(claim)
            raise
        stored = replay_copy(answer) | ({DIGEST: digest} if digest else {})
        people = people_in(answer)  # its external id, which the stored copy leaves out
        await self._complete(Completion(claim, 200, _stored(stored), people), defer)
        return answer

    async def _complete(self, done: Completion, defer: list[Completion] | None) -> None:
        if defer is not None:
            defer.append(done)
            return
        store = await self.store.get()
        await store.complete(done.claim, done.status, done.body, people=done.people)

    async def remember_attempt(self, claim: Claim) -> None:
        """Mark a create whose outcome is unknown, so a replay looks for what it made."""
        store = await self.store.get()
        await asyncio.shield(store.complete(claim, ATTEMPTED, "null"))

    async def remember_create(
        self, claim: Claim, answer_json: Any, *, defer: list[Completion] | None = None
    ) -> None:
        """Store what PassKit answered a create, replacing an answer for a pass since deleted.
        With `defer`, a won claim's answer is appended there, as `once` does."""
        body = _stored(replayed_result(answer_json))
        people = people_in(answer_json)
        if claim.won:
            await self._complete(Completion(claim, 200, body, people), defer)
            return
        store = await self.store.get()
        if claim.done:
            await store.release(claim)
            claim = await store.claim(
                claim.scope, claim.key, self.clock(), ttl=self.ttl, people=people
            )
            if not claim.won:
                return  # another delivery stored it first; either answer will do
        await store.complete(claim, 200, body, people=people)


def replayed_result(result: Any) -> Any:
    """PassKit's answer as a replay repeats it: top-level ids, counts and states only."""
    if not isinstance(result, Mapping):
        return result
    scalar = (str, int, float, bool)
    return {key: value for key, value in result.items()
            if isinstance(value, scalar) and _REPLAYED_RESULT_KEY.search(key)
            and not key.lower().startswith("external")}  # fmt: skip


def replay_copy(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The stored copy of a successful answer: enough to answer a replay, nothing personal.
    The external id (some senders use an email) is not kept: the replay carries it again."""
    copy = {key: value for key, value in answer.items() if key != "external_id"}
    if "result" in copy:
        copy["result"] = replayed_result(copy["result"])
    return copy


def _stored(value: Any) -> str:
    return compact_text(redact(value))


def replayed(claim: Claim) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(claim.body or "{}")
    answer["duplicate"] = True  # `once` takes DIGEST out: it is never answered
    return answer


def _stored_key(scope: str, key: str) -> tuple[str, tuple[str, ...]]:
    """What the store keeps of a key: its digest, and for a create key its external id (as a
    blind index, so `relay erase` finds the row)."""
    people = (key.split(":", 2)[-1],) if scope == CREATE_SCOPE else ()
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(), people

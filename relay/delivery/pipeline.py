"""One delivery, top to bottom: hook + flat fields → rendered request → PassKit → answer.

Shared by the hook endpoint, Stripe and replays, and free of Starlette: it takes a verified hook
and parsed fields and returns the flat JSON answer a next Zapier/Make step can map, or raises a
RelayError that the app renders as the friendly error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.access.tokens import Hook
from relay.delivery import unused
from relay.delivery.idempotency import ATTEMPTED, CREATE_SCOPE, OnceGuard, create_key
from relay.delivery.templating import (
    NO_KEY_FIELD,
    RequestTemplate,
    SkipDelivery,
    TemplateLibrary,
    check_fields,
    check_params_of,
    render,
    resolve_params,
)
from relay.errors import (
    FieldError,
    HookMisconfigured,
    InvalidRequest,
    MissingFields,
    PassKitBusy,
    PassKitConflict,
    PassKitError,
    PassKitNotFound,
    PassKitUnavailable,
    RelayError,
    TemplateMissing,
    quote_value,
)
from relay.forms import dates as humandates
from relay.forms.fields import Fields
from relay.forms.filters import Readings
from relay.passkit.client import PassKitAnswer, PassKitClient, error_for_answer, raise_for_answer
from relay.passkit.operations import CATALOG, Operation, PassKitRequest, build_request, dig
from relay.store import Completion

MAX_PROBLEMS = 20  # renders tried while collecting every problem with what was sent

# "Does it already exist?" is answered by looking, never by PassKit's words: PassKit documents
# no answer for a duplicate (only 200/400/401/403/404/500/503), so a create that fails for any
# reason but these is looked up once by its external id. 401/403: the relay's credentials;
# 404: what the create refers to (program, tier, offer) is missing; 429: rate limited. 5xx are
# retried by the client and arrive as PassKitUnavailable, which is looked up too (see _attempt).
NOT_ABOUT_EXISTENCE = frozenset({401, 403, 404, 429})
# The lookup follows a call that may have used most of RELAY_RETRY_BUDGET: bounded so that,
# together, they stay inside Zapier's 30 s. A lookup that fails or takes longer finds nothing.
LOOKUP_TIMEOUT = 5.0
# Seconds a sender is asked to wait (Retry-After) when a create could not be settled by look-up.
UNSETTLED_RETRY = 30
# How far PassKit's clock may be behind ours when its `created` date says whether a record found
# after a lost answer is younger than the call that may have made it.
CLOCK_SKEW = timedelta(minutes=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sent:
    """The request PassKit answered (the update, when an upsert found the record) and its
    answer."""

    request: PassKitRequest
    answer: PassKitAnswer
    created: bool
    duplicate: bool = False  # a replayed create: PassKit already had it from us


@dataclass(frozen=True)
class _Attempt:
    """A create or upsert sent, and, when it failed, what one lookup by its external id found."""

    started: datetime  # when the create was first sent (the relay's clock)
    answer: PassKitAnswer | None  # None: every retry ended in a 5xx or found no connection
    found: PassKitAnswer | None = None  # the record PassKit has: `{"id"}`
    created: datetime | None = None  # when PassKit says it made that record, if it says
    unavailable: PassKitUnavailable | None = None  # why there is no answer
    # The look-up that would settle it could not be made (PassKit busy, down or slow): `found`
    # None then means "not known", never "PassKit has none".
    unsettled: bool = False

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.answer.ok

    @property
    def lost(self) -> bool:
        """This very call may have made the record it found: an attempt's answer never came (a
        dropped connection retried, or only 5xx answers: PassKit's "unexpected error" can follow
        the write), and PassKit does not date the record before the call began."""
        maybe = self.answer is None or self.answer.attempts > 1
        return maybe and (self.created is None or self.created >= self.started - CLOCK_SKEW)

    def failure(self, operation: Operation) -> PassKitError:
        """The create's own failure, as PassKit gave it; when the look-up that would have
        told "made already" from "refused" could not be made, a retryable 503 instead: never
        a conflict for what may be this relay's own record. (With no answer at all, PassKit's
        own 503, passkit_unavailable, already says to send it again.)"""
        if self.unsettled and self.answer is not None:
            what = operation.kind or "record"
            return PassKitBusy(
                f"PassKit did not confirm the new {what} and could not be asked whether it made "
                "it: nothing is settled yet, and nothing is lost.",
                hint="Send it again (Zapier's autoreplay or Make's Break handler do): the relay "
                "looks it up then and answers with its id; it is never made twice.",
                retry_after=UNSETTLED_RETRY,
            )
        if self.answer is None:
            assert self.unavailable is not None
            return self.unavailable
        return error_for_answer(self.answer, operation)


@dataclass
class Trace:
    """What one delivery did, filled in on the way for its delivery-log record."""

    operation: str = ""
    passkit_request: dict[str, Any] | None = None
    passkit_status: int | None = None
    passkit_response: Any = None
    # The error behind the answer (a failure, or a not-found that was ignored): the log stores
    # its masked message, never the sender's copy.
    error: RelayError | None = None
    # When a list: the won claims' answers, for the log entry to write in its own transaction
    # (Endpoints.recording sets it; it records the delivery whatever happens).
    deferred: list[Completion] | None = None

    def failed(self, error: RelayError) -> tuple[int, dict[str, Any]]:
        """The status and answer `error` gives the sender, remembered for the log."""
        self.error = error
        return error.status, error.answer()


@dataclass
class Relay:
    """What a delivery needs, built once per app. Without `guard` (no store: `relay render`,
    unit tests) creates are not protected against replays."""

    library: TemplateLibrary
    client: PassKitClient
    clock: Callable[[], datetime] = utc_now
    guard: OnceGuard | None = None
    # Each hook's settings checked once (per template and params): None when they are right.
    _settings_checked: dict[tuple[Any, ...], tuple[str, str] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def template_for(self, hook: Hook) -> RequestTemplate:
        template = self.library.get(hook.template)
        if template is None:
            raise TemplateMissing(
                f"This hook's template ({hook.template}) is gone from this relay."
            )
        return template

    def check_settings(self, hook: Hook, template: RequestTemplate) -> None:
        """HookMisconfigured when a setting of the hook (a param minted before it was checked,
        such as country=USA) is one its template refuses: every delivery would fail on it, so
        it is named for the sender before anything is rendered. Ids are left to PassKit."""
        key = (hook.id, template.name, tuple(sorted(hook.params.items())))
        if key not in self._settings_checked:
            if len(self._settings_checked) >= 10_000:
                self._settings_checked.clear()
            _, problems = check_params_of(template.params, hook.params, passkit_ids=False)
            self._settings_checked[key] = (problems[0].name, str(problems[0])) if problems else None
        if (wrong := self._settings_checked[key]) is not None:
            raise HookMisconfigured(*wrong)

    def order_key(self, hook: Hook, fields: Fields) -> tuple[str, str] | None:
        """(key_field, its value) when this delivery's idempotency key comes from the order it
        names: a hook minted from v2 on whose template adds or subtracts and whose key_field
        is not none. MissingFields when that field was not sent."""
        if hook.version < 2 or not self.template_for(hook).additive:
            return None
        name = hook.params.get("key_field", "")
        if not name or name == NO_KEY_FIELD:
            return None
        value = fields.get(name)
        text = (value[0] if value else "") if isinstance(value, list) else (value or "")
        if not text.strip():
            raise MissingFields([name], list(fields), hint=(
                f"This hook counts each {name} once, so every delivery needs it: map {name} "
                "to the order, purchase or visit id from an earlier step."))  # fmt: skip
        return name, text.strip()

    def prepare(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        extra: Mapping[str, Any] | None = None,
        *,
        updating: bool = False,
    ) -> PassKitRequest:
        """Check, render and validate: everything short of sending. Raises on any problem; a
        problem with what was sent carries every other one found (`FieldError.also`)."""
        template = self.template_for(hook)
        self.check_settings(hook, template)
        if hook.version >= 2:
            fields = unused.with_aliases(template, fields)
            unused.refuse_misspelling(template, fields)
        problems: list[FieldError] = []
        try:
            check_fields(template, fields, received)
        except MissingFields as missing:
            problems.append(missing)
        try:
            params = resolve_params(template, hook.params)
        except RelayError:
            if problems:  # what was sent is named first, as before
                raise problems[0] from None
            raise
        current = hook.version >= 2
        reading = params.get("number_format") if current else None
        zone = params.get("timezone") if current else None
        now = self.clock()
        body: Any = None
        remaining = dict(fields)
        with Readings(reading, zone) as notes:
            for _ in range(MAX_PROBLEMS):
                try:
                    body = render(template, remaining, params, now=now, extra=extra,
                                  updating=updating)  # fmt: skip
                    break
                except FieldError as problem:
                    problems.append(problem)
                    if not problem.field or problem.field not in remaining:
                        break
                    del remaining[problem.field]  # read on without it, to find the others
                except (RelayError, SkipDelivery):
                    if not problems:
                        raise
                    break  # the problems found so far are the sender's to fix first
        if problems:
            first, *also = problems
            first.also = also
            raise first
        operation = template.operation
        if updating and operation.on_conflict:
            operation = CATALOG[operation.on_conflict]
        request = build_request(operation, body, fields)
        return dataclasses.replace(request, notes=tuple(notes)) if notes else request

    def create_ahead(
        self, hook: Hook, fields: Fields, received: list[str]
    ) -> tuple[PassKitRequest, tuple[str, str]] | None:
        """For a keyed delivery that creates: its request, rendered now, and the create key
        `send` will claim, so both keys are claimed in one trip (`OnceGuard.once`'s `ahead`).
        None when it does not create under create protection, or cannot be rendered: then it
        is rendered, and fails, inside `once` as before."""
        if self.guard is None:
            return None
        try:
            if not self.template_for(hook).operation.creates:
                return None
            request = self.prepare(hook, fields, received)
        except (RelayError, SkipDelivery):
            return None
        key = create_key(request) if request.operation.creates else None
        return (request, (CREATE_SCOPE, key)) if key is not None else None

    async def send(
        self,
        request: PassKitRequest,
        update: Callable[[], PassKitRequest] | None = None,
        trace: Trace | None = None,
    ) -> Sent:
        """Send. A create or upsert that fails is looked up by its external id (`_attempt`):
        when PassKit has the record, an upsert sends the update built by `update`, and a create
        answers with it if it is this relay's (see `_send_create`), else a conflict. Creates go
        through create protection (see `idempotency`)."""
        operation = request.operation
        if not (operation.creates or operation.on_conflict):
            answer = await self._call(request, trace)
            raise_for_answer(answer, operation)
            return Sent(request, answer, created=False)
        key = create_key(request) if operation.creates and self.guard else None
        if key is not None:
            return await self._send_create(request, key, trace)
        attempt = await self._attempt(request, trace)
        if attempt.ok:
            assert attempt.answer is not None
            return Sent(request, attempt.answer, created=True)
        if attempt.found is None:
            raise attempt.failure(operation)
        if operation.on_conflict and update is not None:
            request = update()
            answer = await self._call(request, trace)
            raise_for_answer(answer, request.operation)
            return Sent(request, answer, created=False)
        if attempt.lost:  # no store to ask: only this call's own lost attempt counts as ours
            return Sent(request, attempt.found, created=True)
        raise _conflict(request)

    async def _send_create(self, request: PassKitRequest, key: str, trace: Trace | None) -> Sent:
        assert self.guard is not None
        guard = self.guard
        claim = await guard.claim(CREATE_SCOPE, key)
        try:
            attempt = await self._attempt(request, trace)
        except BaseException:
            # No answer (timed out, the sender hung up): PassKit may have made it.
            if claim.won:
                await guard.remember_attempt(claim)
            raise
        if attempt.ok:
            assert attempt.answer is not None
            await guard.remember_create(claim, attempt.answer.json, defer=_deferred(trace))
            return Sent(request, attempt.answer, created=True)
        found = attempt.found
        if found is None:  # PassKit has no such record (or could not say): its failure stands
            if claim.won and (attempt.answer is None or attempt.unsettled):
                # 5xx throughout, or a refusal the look-up could not settle: it may be ours,
                # so the claim is kept and the next retry settles it by look-up.
                await guard.remember_attempt(claim)
            elif claim.won:
                await guard.release(claim)
            raise attempt.failure(request.operation)
        if claim.done and claim.status != ATTEMPTED:
            # A replay of a create this relay made: answer as the first time did, unless that
            # pass was deleted since and this record was made elsewhere.
            stored = json.loads(claim.body or "null")
            if dig(stored, request.operation.id_in_answer) in (None, found.json["id"]):
                answer = PassKitAnswer(200, stored, {}, found.attempts)
                return Sent(request, answer, created=False, duplicate=True)
        elif claim.done or attempt.lost:
            # Ours, its answer lost: an earlier delivery's (ATTEMPTED: a replay, so a duplicate)
            # or an earlier attempt of this very call (so this delivery created it).
            await guard.remember_create(claim, found.json, defer=_deferred(trace))
            return Sent(request, found, created=not claim.done, duplicate=claim.done)
        if claim.won:
            await guard.release(claim)
        raise _conflict(request)

    async def _attempt(self, request: PassKitRequest, trace: Trace | None) -> _Attempt:
        """Send a create (or an upsert's create); when it fails for a reason that could be "it
        already exists", look the record up, once."""
        started = self.clock()
        try:
            answer = await self._call(request, trace)
        except PassKitBusy:
            raise  # no turn at PassKit's rate: nothing was sent, there is nothing to look up
        except PassKitUnavailable as unavailable:
            # 5xx to the end of the retries. PassKit may be down, or answer a duplicate with 500
            # ("unexpected error") every time: then retrying can never succeed and a 503 would
            # have Zapier, Make or Stripe replay it for days. One bounded lookup tells them apart.
            found, created, unsettled = await self._look_up(request, trace)
            return _Attempt(started, None, found, created, unavailable, unsettled)
        if answer.ok or answer.status in NOT_ABOUT_EXISTENCE:
            return _Attempt(started, answer)
        found, created, unsettled = await self._look_up(request, trace)
        return _Attempt(started, answer, found, created, unsettled=unsettled)

    async def _look_up(
        self, request: PassKitRequest, trace: Trace | None
    ) -> tuple[PassKitAnswer | None, datetime | None, bool]:
        """The record `request` creates, looked up by its external id (PassKit's documented 200
        or 404): `{"id"}` and its `created` date, or None when PassKit has none (404) or there
        is nothing to look it up by. The third value is True when the look-up could not be
        made (PassKit busy, down, another failure, or slower than LOOKUP_TIMEOUT): then
        nothing is known, which is not the same as "none". Only a found record replaces the
        create's exchange in the trace (for the log); otherwise the create's failure shows."""
        nothing = (None, None, False)
        unknown = (None, None, True)
        source = _finds_for(request.operation)
        if source is None or request.json is None or source.find_with is None:
            return nothing
        found_at = ((name, dig(request.json, tuple(field.split(".")))) for field, name in
                    source.find_keys)  # fmt: skip
        keys = {name: value for name, value in found_at if value is not None}
        try:
            lookup = build_request(CATALOG[source.find_with], keys)
        except InvalidRequest:
            return nothing  # e.g. a ticket issued for an eventId: no production to look in
        budget = min(LOOKUP_TIMEOUT, self.client.settings.passkit_timeout)
        try:
            async with asyncio.timeout(budget):
                found = await self._call(lookup, None)
        except (PassKitError, TimeoutError):
            return unknown
        record = found.json
        if found.status == 404:
            return nothing
        if not (found.ok and isinstance(record, dict) and isinstance(record.get("id"), str)):
            return unknown
        if trace is not None:
            trace.passkit_request = lookup.describe()
            trace.passkit_status = found.status
            trace.passkit_response = record
        answer = PassKitAnswer(200, {"id": record["id"]}, found.headers, found.attempts)
        return answer, _timestamp(record.get("created")), False

    async def _call(self, request: PassKitRequest, trace: Trace | None) -> PassKitAnswer:
        if trace is not None:
            trace.passkit_request = request.describe()
        answer = await (self._list(request) if request.operation.streams else
                        self.client.send(request))  # fmt: skip
        if trace is not None:
            trace.passkit_status = answer.status
            trace.passkit_response = answer.json
        return answer

    async def _list(self, request: PassKitRequest) -> PassKitAnswer:
        """A search through one of PassKit's lists (members.find): its first record as the
        answer, or PassKit's 404 shape when the list is empty (found nothing)."""
        listed = await self.client.list_records(request.method, request.path, request.json or {})
        if not listed.ok:
            return PassKitAnswer(listed.status, listed.json, {})
        if not listed.records:
            return PassKitAnswer(404, {"message": "no record matches what was sent"}, {})
        return PassKitAnswer(200, listed.records[0], {})

    def success(self, sent: Sent, *, request_id: str, operation: Operation) -> dict[str, Any]:
        request, answer = sent.request, sent.answer
        pass_id = dig(answer.json, request.operation.id_in_answer) or dig(
            request.json, request.operation.id_in_request
        )
        external_id = dig(request.json, request.operation.external_id_in_request)
        result: dict[str, Any] = {
            "ok": True,
            "operation": operation.name,
            "id": pass_id if isinstance(pass_id, str) else None,
            "external_id": external_id if isinstance(external_id, str) else None,
            "pass_url": None,
            "duplicate": sent.duplicate,
            "dry_run": False,
            "request_id": request_id,
        }
        if operation.on_conflict:
            result["created"] = sent.created
        if isinstance(pass_id, str) and operation.kind and not operation.pass_gone:
            result["pass_url"] = self.client.pass_url(pass_id)
        result["result"] = answer.json
        return result

    async def try_out(
        self, hook: Hook, fields: Fields, received: list[str], *, request_id: str
    ) -> dict[str, Any]:
        """A dry run whose problems are answers too (hook page and admin test forms)."""
        try:
            return await self.deliver(hook, fields, received, request_id=request_id, dry_run=True)
        except RelayError as exc:
            return exc.answer()

    async def deliver(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        *,
        request_id: str,
        dry_run: bool = False,
        extra: Mapping[str, Any] | None = None,
        trace: Trace | None = None,
        prepared: PassKitRequest | None = None,
    ) -> dict[str, Any]:
        """`prepared`: the request `prepare` made of these very fields (`create_ahead`)."""
        answer = await self._deliver(hook, fields, received, request_id=request_id,
                                     dry_run=dry_run, extra=extra, trace=trace,
                                     prepared=prepared)  # fmt: skip
        if extra is None:  # a hook's delivery (Stripe's events carry far more than is read)
            template = self.template_for(hook)
            current = hook.version >= 2
            read = unused.with_aliases(template, fields) if current else fields
            answer["ignored_fields"] = unused.ignored_fields(template, read, aliases=current)
        return answer

    async def _deliver(
        self,
        hook: Hook,
        fields: Fields,
        received: list[str],
        *,
        request_id: str,
        dry_run: bool,
        extra: Mapping[str, Any] | None,
        trace: Trace | None,
        prepared: PassKitRequest | None = None,
    ) -> dict[str, Any]:
        try:
            request = prepared or self.prepare(hook, fields, received, extra)
        except SkipDelivery as skip:
            return {"ok": True, "skipped": True, "reason": skip.reason, "request_id": request_id}
        operation = request.operation
        if trace is not None:
            trace.operation = operation.name
        if dry_run:
            return (
                {
                    "ok": True,
                    "operation": operation.name,
                    "dry_run": True,
                    "request_id": request_id,
                    "request": request.describe(),
                }
                | ({"notes": list(request.notes)} if request.notes else {})
                | local_times(hook, request)
            )
        try:
            sent = await self.send(
                request, lambda: self.prepare(hook, fields, received, extra, updating=True), trace
            )
        except PassKitNotFound as missing:
            searching = self._search_answers_miss(hook, operation)
            if not searching and self.template_for(hook).if_missing != "ignore":
                raise
            if trace is not None:
                trace.error = missing  # the log's copy of the reason, PassKit's words masked
            if searching:
                return {"ok": True, "found": False, "operation": operation.name, "id": None,
                        "reason": "PassKit has no record matching what was sent",
                        "request_id": request_id}  # fmt: skip
            reason = f"nothing to do: {missing.message}"
            return {"ok": True, "ignored": True, "reason": reason, "request_id": request_id}
        answer = self.success(sent, request_id=request_id, operation=operation)
        if request.notes:
            answer["notes"] = list(request.notes)
        answer |= local_times(hook, request)
        if operation.looks_up and hook.version >= 2:
            answer = {"ok": True, "found": True, **answer}
        return answer

    def _search_answers_miss(self, hook: Hook, operation: Operation) -> bool:
        """A search step that answers a miss with 200 found: false: a look-up of a hook minted
        from v2 on whose if_missing is not "fail" (older URLs keep their 404)."""
        if not operation.looks_up or hook.version < 2:
            return False
        params = resolve_params(self.template_for(hook), hook.params)
        return params.get("if_missing") != "fail"


def _finds_for(operation: Operation) -> Operation | None:
    """The operation whose `find_with` looks up what `operation` creates: its own, or for an
    upsert, the create's it shares its PassKit call with (members.upsert enrols as
    members.enrol does)."""
    if operation.find_with:
        return operation
    same_call = (op for op in CATALOG.values() if op.find_with and op.creates
                 and (op.method, op.paths) == (operation.method, operation.paths))  # fmt: skip
    return next(same_call, None)


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as PassKit writes it (nanoseconds and all), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_CONFLICT = {
    "member": ("A member with external id", None),  # None: PassKitConflict's hint (upsert)
    "coupon": (
        "A coupon with external id",
        "Each coupon code is issued once per campaign: map a new external_id for a new coupon.",
    ),
    "ticket": (
        "A ticket with number",
        "Each ticket number is issued once per production: map a new ticket_number.",
    ),
}


def _conflict(request: PassKitRequest) -> PassKitConflict:
    """PassKit has the record this create makes, and this relay did not make it."""
    operation = request.operation
    what, hint = _CONFLICT.get(operation.kind or "", ("A record with external id", None))
    quoted = quote_value(dig(request.json, operation.external_id_in_request))
    return PassKitConflict(
        f"{what} {quoted} already exists in PassKit, made outside this relay.",
        hint=hint,
        private=[quoted],
    )


def local_times(hook: Hook, request: PassKitRequest) -> dict[str, Any]:
    """For a hook minted from v2 on with a time zone: `{"local_times": {path: moment}}`, each
    date-time sent to PassKit (in UTC, as PassKit takes them) shown again on the clocks of the
    hook's zone (`{"event.scheduledStartDate": "2026-03-01T19:30:00-05:00"}`), with
    `"timezone"`; else nothing."""
    zone = hook.params.get("timezone") if hook.version >= 2 else None
    if not zone:
        return {}
    found: dict[str, str] = {}
    _walk_times(request.json, "", zone, found)
    return {"local_times": found, "timezone": zone} if found else {}


def _walk_times(value: Any, path: str, zone: str, found: dict[str, str]) -> None:
    # Not nested in local_times: a nested function that calls itself is a reference cycle,
    # left for the garbage collector after every delivery.
    # A value's path is spelt only for a moment found or an object or list to walk into: most
    # values are text that is no moment, or numbers.
    if isinstance(value, dict) or (not isinstance(value, str) and isinstance(value, Mapping)):
        for key, inner in value.items():
            if isinstance(inner, str):
                if (moment := humandates.local_moment(inner, zone)) is not None:
                    found[f"{path}.{key}" if path else str(key)] = moment.isoformat()
            elif not (inner is None or isinstance(inner, int | float)):
                _walk_times(inner, f"{path}.{key}" if path else str(key), zone, found)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _walk_times(inner, f"{path}.{index}", zone, found)
    elif (moment := humandates.local_moment(value, zone)) is not None:
        found[path] = moment.isoformat()


def _deferred(trace: Trace | None) -> list[Completion] | None:
    return trace.deferred if trace is not None else None

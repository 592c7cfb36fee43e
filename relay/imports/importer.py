"""Bring existing members in: each row of a CSV is one delivery of a hook, through the very path a
live delivery takes (`Endpoints.run_hook`, logged in the delivery log like any other).

- `check` is the dry run: every row rendered and validated (`Relay.try_out`), nothing sent.
- `run` sends the rows, a few at a time (memory and PassKit's rate stay bounded), each under an
  idempotency key made from the hook and the row's fields, so a rerun sends nothing twice.
  `relay.imports.csvfile.Progress` notes each row started and finished; after a crash the rows that
  were in flight have their claims taken over (the crashed process cannot finish them), so
  `--resume` settles each row exactly once without waiting for the claims to go stale.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from relay.access.tokens import Hook, token_from_url
from relay.delivery.idempotency import CREATE_SCOPE, create_key, fields_digest
from relay.delivery.journal import fields_for_log
from relay.delivery.pipeline import Trace
from relay.delivery.templatecheck import SAMPLES
from relay.delivery.templating import FieldSpec, SkipDelivery
from relay.errors import InternalError, RelayError
from relay.forms.fields import Fields, FieldValue
from relay.forms.payloads import Payload
from relay.imports.csvfile import FailedRows, ImportRunning, MemberFile, Progress, Row
from relay.stripe.events import PARAMS_TEMPLATE
from relay.web.endpoints import Endpoints, new_request_id

log = logging.getLogger("relay")
IN_FLIGHT = 4  # rows sent at once: enough to hide PassKit's latency, few enough to be polite
_HOOK_ID = re.compile(r"hk_[0-9a-f]+")


class Ledger(Protocol):
    """Where a run notes the rows it started and finished (`csvfile.Progress` beside a CSV;
    `relay.imports.stored.StoredLedger` in the relay's database), so a stopped run resumes."""

    async def held_elsewhere(self) -> bool: ...

    async def read(self) -> tuple[dict[str, Any], dict[int, bool], set[int]]:
        """(stamp, finished line → succeeded, lines started but never finished)."""

    async def open(self, stamp: dict[str, Any], *, resume: bool) -> None: ...

    async def note(self, what: str, line: int) -> None: ...

    async def finish(self, *, remove: bool) -> None: ...


class FailedSink(Protocol):
    """Where failed rows go, with their reason (a CSV file, or the job's stored file)."""

    async def add(self, row: Row, reason: str) -> None: ...

    async def close(self) -> None: ...


class ImportRefused(Exception):
    """The import cannot start (a hook that is not there or revoked, a broken hook): in words."""


@dataclass
class Tally:
    total: int
    done: int = 0
    imported: int = 0  # sent to PassKit and done
    already: int = 0  # done by an earlier run (answered from the idempotency store)
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def succeeded(self) -> int:
        return self.done - self.failed

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in
                ("total", "done", "imported", "already", "failed")}  # fmt: skip


def reason(answer: dict[str, Any]) -> str:
    """A failed row's answer in words (the field first, as the relay's errors say it)."""
    error = answer.get("error") or {}
    return str(error.get("message") or "the relay could not deliver this row")


def _sample(spec: FieldSpec) -> str:
    return spec.example or SAMPLES.get(spec.type, "Sample")


def row_key(fields: dict[str, Any]) -> str:
    """The row's idempotency key (the hook is the scope): its fields, not its line, so the same
    member in a re-exported or reordered file is still recognised."""
    return "import:" + fields_digest(fields)


async def resolve_hook(endpoints: Endpoints, given: str) -> Hook:
    """The hook a URL (its token verified, as a live call's is) or a registry id names."""
    services = endpoints.s
    given = given.strip()
    try:
        if _HOOK_ID.fullmatch(given):
            record = await (await services.store.get()).get_hook(given)
            if record is None:
                raise ImportRefused(f"there is no hook {given} on this relay: see relay hooks")
            if record.revoked:
                raise ImportRefused(f"hook {given} has been revoked: mint a new one")
            hook = Hook(record.id, record.template, dict(record.params))
        else:
            hook = services.signer.verify(token_from_url(given))
            await services.revocations.check(hook.id)
        if hook.template == PARAMS_TEMPLATE:
            raise ImportRefused("that is a Stripe endpoint: import through a hook such as "
                                "member-upsert")  # fmt: skip
        template = services.relay.template_for(hook)
        services.relay.check_settings(hook, template)
    except RelayError as exc:
        raise ImportRefused(exc.message) from None
    return hook


class Importer:
    def __init__(self, endpoints: Endpoints, hook: Hook, file: MemberFile) -> None:
        self.endpoints = endpoints
        self.s = endpoints.s
        self.hook = hook
        self.file = file

    # -- the dry run -------------------------------------------------------------------------

    async def check(self) -> AsyncIterator[tuple[Row, list[str]]]:
        """Each bad row with every one of its problems, in file order; nothing is sent or
        logged."""
        for n, row in enumerate(self.file.rows()):
            if n % 100 == 99:
                await asyncio.sleep(0)  # rendering is all CPU: let a server answer meanwhile
            try:
                payload = self.file.payload(row)
            except RelayError as exc:
                yield row, [reason(exc.answer())]
                continue
            problems = await self.problems(payload.fields, payload.received)
            if problems:
                yield row, problems

    async def problems(self, fields: Fields, received: list[str]) -> list[str]:
        """Every problem of one row: a dry run stops at the first, so each field found wrong
        is set to its template's example and the row tried again, until it passes or a
        problem names no field (at most once per field)."""
        template = self.s.relay.template_for(self.hook)
        fields, received = dict(fields), list(received)
        found: list[str] = []
        for _ in range(len(template.fields) + 1):
            answer = await self.s.relay.try_out(self.hook, fields, received,
                                                request_id=new_request_id())  # fmt: skip
            if answer.get("ok"):
                break
            found.append(reason(answer))
            name = str((answer.get("error") or {}).get("field") or "")
            spec = template.fields.get(name)
            if spec is None or (name in fields and fields[name] == _sample(spec)):
                break
            fields[name] = FieldValue(_sample(spec), name)
            received = [*received, name] if name not in received else received
        return found

    # -- the real run ------------------------------------------------------------------------

    async def run(
        self,
        tally: Tally,
        progress: Ledger,
        failed: FailedSink | None,
        *,
        skip: Iterable[int] = (),
        on_row: Callable[[Tally], None] = lambda tally: None,
    ) -> Tally:
        """Send every row not in `skip`, IN_FLIGHT at a time; `tally` counts as rows finish."""
        skipped = set(skip)
        pending: set[asyncio.Task[None]] = set()

        async def one(row: Row) -> None:
            await progress.note("start", row.line)
            answer = await self.deliver(row)
            ok = bool(answer.get("ok"))
            if not ok and failed is not None:
                await failed.add(row, reason(answer))  # before "failed" is noted: never lost
            await progress.note("ok" if ok else "failed", row.line)
            tally.done += 1
            if not ok:
                tally.failed += 1
            elif answer.get("duplicate"):
                tally.already += 1
            else:
                tally.imported += 1
            on_row(tally)

        try:
            for row in self.file.rows():
                if row.line in skipped:
                    continue
                if len(pending) >= IN_FLIGHT:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.add(asyncio.create_task(one(row)))
            if pending:
                await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()
        return tally

    async def deliver(self, row: Row) -> dict[str, Any]:
        """One row as one hook delivery, logged like any; the answer, never an exception."""
        started = time.perf_counter()
        request_id = new_request_id()
        trace = Trace()
        status, answer = 500, dict[str, Any]()
        logged: dict[str, Any] | None = None
        try:
            payload = self.file.payload(row)
            logged = fields_for_log(payload.fields)
            await self.s.revocations.check(self.hook.id)
            answer = await self.endpoints.run_hook(
                self.hook, payload.fields, payload.received, request_id=request_id,
                trace=trace, key=self._row_key(payload.fields),
            )  # fmt: skip
            status = 200
        except RelayError as exc:
            status, answer = trace.failed(exc)
        except Exception:
            log.exception("%s import: line %d failed unexpectedly", request_id, row.line)
            status, answer = trace.failed(InternalError())
        await self.endpoints.record(
            "hook", self.hook, self.hook.template, trace=trace, status=status, answer=answer,
            started=started, request_id=request_id, request=logged,
        )  # fmt: skip
        return answer

    async def free_claims(self, lines: set[int]) -> None:
        """Rows that were in flight when a run died: their idempotency claims are freed and
        their creates marked as attempted (PassKit may have made them), so the rerun asks
        PassKit and settles each once, instead of waiting a minute for the claims to go stale.
        Only called once the dead run's lock on the progress file is gone."""
        if not lines:
            return
        store = await self.s.store.get()
        for row in self.file.rows():
            if row.line not in lines:
                continue
            try:
                payload = self.file.payload(row)
                keys = [(self.hook.id, self._row_key(payload.fields))]
            except RelayError:
                continue
            if (create := self._create_key(payload)) is not None:
                keys.append((CREATE_SCOPE, create))
            for scope, key in keys:
                claim = await self.s.guard.take_over(scope, key)
                if claim.won and scope == CREATE_SCOPE:
                    await self.s.guard.remember_attempt(claim)
                elif claim.won:
                    await store.release(claim)

    def _row_key(self, fields: Fields) -> str:
        """The row's idempotency key: the order it names when the hook counts each order once
        (key_field, as a live delivery derives it, so a re-import or a live call of the same
        order counts once), else its fields (row_key)."""
        order = self.s.relay.order_key(self.hook, fields)
        return f"{order[0]}={order[1]}" if order else row_key(fields)

    def _create_key(self, payload: Payload) -> str | None:
        try:
            request = self.s.relay.prepare(self.hook, payload.fields, payload.received)
        except (RelayError, SkipDelivery):
            return None
        return create_key(request) if request.operation.creates else None


async def import_rows(
    importer: Importer,
    *,
    failed_to: Path | Callable[[bool], Awaitable[FailedSink]] | None,
    resume: bool,
    on_start: Callable[[Tally], None] = lambda tally: None,
    on_row: Callable[[Tally], None] = lambda tally: None,
    ledger: Ledger | None = None,
    stamp: dict[str, Any] | None = None,
) -> Tally:
    """A whole run: what a stopped run left settled first, then every row not yet finished
    (`resume`) or every row (a rerun: rows done before are answered from the idempotency store
    and sent nowhere). The ledger (by default the progress file beside the CSV, stamped with
    the file's size and time) is cleared once every row is finished. `failed_to`: a CSV path,
    or a sink made for a fresh run (False) or one carried on (True)."""
    file = importer.file
    progress: Ledger = ledger or Progress(file.path)
    if await progress.held_elsewhere():
        raise ImportRunning(f"an import of {file.name} is still running")
    before, finished, in_flight = await progress.read()
    current = stamp or Progress.stamp(file.path, importer.hook.id)
    if file.mapping:  # another matching of the columns is another run
        current = {**current, "mapping": file.mapping}
    if before == current:
        await importer.free_claims(in_flight)
    elif resume and before:
        raise ImportRefused(
            f"{file.name} or the hook changed since the stopped run: run it again without "
            "--resume (rows imported before are recognised and not sent twice)"
        )
    resume = resume and before == current
    tally = Tally(total=file.count())
    if resume:
        tally.done = len(finished)
        tally.failed = sum(1 for ok in finished.values() if not ok)
        tally.already = tally.done - tally.failed
    await progress.open(current, resume=resume)
    failed: FailedSink | None = None
    if isinstance(failed_to, Path):
        failed = FailedRows(failed_to, file.header, append=resume)
    elif failed_to is not None:
        failed = await failed_to(resume)
    on_start(tally)
    try:
        await importer.run(tally, progress, failed, skip=finished if resume else (),
                           on_row=on_row)  # fmt: skip
    finally:
        await progress.finish(remove=tally.done >= tally.total)
        if failed is not None:
            await failed.close()
    return tally

"""The store's logic, written once for both SQLite and PostgreSQL.

Every operation is one statement (an `INSERT … ON CONFLICT … RETURNING` where it must decide
something atomically, see `queries.py`), so a backend only supplies three primitives: read,
write one statement in its own transaction, and write a batch in one transaction.
"""

# ruff: noqa: S608  (statements are built from the constants in queries.py; values are parameters)

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from relay.ids import unique_hex
from relay.sealing import Sealer
from relay.store import queries as q
from relay.store.batch import GroupCommit
from relay.store.checkouts import CheckoutRecords
from relay.store.imports import ImportFiles
from relay.store.outbox import EventOutbox
from relay.store.personal import open_text, person_column, seal_text
from relay.store.privacy import PersonalData
from relay.store.queries import Params
from relay.store.records import (
    DISMISSED,
    IDEMPOTENCY_TTL,
    STALE_AFTER,
    Claim,
    Completion,
    DeliveryRecord,
    DeliveryStats,
    FailureGroup,
    HookFailing,
    HookRecord,
    new_delivery_id,
)
from relay.store.spend import SpendLedger


class SQLStore(PersonalData, EventOutbox, CheckoutRecords, SpendLedger, ImportFiles, ABC):
    """Everything but the connection handling; see `relay.store.Store` for the contract."""

    def __init__(self) -> None:
        self.sealer: Sealer | None = None  # set by open_store: seals personal data
        self._log: GroupCommit[tuple[DeliveryRecord, Sequence[Completion]], None] = GroupCommit(
            self._flush_deliveries
        )

    # -- the backend's primitives (and _read, _write: relay.store.queries.Statements) -------

    @abstractmethod
    async def _write_batch(self, steps: Sequence[tuple[str, Sequence[Params]]]) -> None:
        """Run each statement over its parameter rows, all in one transaction."""

    @abstractmethod
    async def migrate(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    async def close(self) -> None:
        await self._log.aclose()
        await self._close()

    async def ping(self) -> bool:
        try:
            rows = await self._read("SELECT 1", {})
        except Exception:  # noqa: BLE001 - a health check reports, it does not raise
            return False
        return bool(rows and rows[0][0] == 1)

    # -- hooks -------------------------------------------------------------------------------

    async def add_hook(self, hook: HookRecord) -> None:
        await self._write(
            q.ADD_HOOK,
            {
                "id": hook.id,
                "template": hook.template,
                "params": json.dumps(dict(hook.params), sort_keys=True),
                "label": hook.label,
                "created_at": hook.created_at,
                "revoked_at": hook.revoked_at,
            },
        )

    async def get_hook(self, hook_id: str) -> HookRecord | None:
        rows = await self._read(
            f"SELECT {q.HOOK_COLUMNS} FROM hooks WHERE id = :id", {"id": hook_id}
        )
        return q.hook_from_row(rows[0]) if rows else None

    async def list_hooks(self, *, include_revoked: bool = True) -> list[HookRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await self._read(
            f"SELECT {q.HOOK_COLUMNS} FROM hooks{where} ORDER BY created_at DESC, id", {}
        )
        return [q.hook_from_row(row) for row in rows]

    async def revoke_hook(
        self,
        hook_id: str,
        at: float,
        *,
        template: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> bool:
        args = {"id": hook_id, "at": at}
        if template is None:
            changed, _ = await self._write(q.REVOKE_HOOK, args)
        else:
            # The caller verified a token, so the hook is real even if its row was lost.
            changed, _ = await self._write(
                q.REVOKE_OR_REGISTER_HOOK,
                {**args, "template": template, "params": json.dumps(dict(params or {}))},
            )
        return changed == 1

    async def revoked_hooks(self) -> dict[str, float]:
        rows = await self._read("SELECT id, revoked_at FROM hooks WHERE revoked_at IS NOT NULL", {})
        return {row[0]: row[1] for row in rows}

    # -- idempotency -------------------------------------------------------------------------

    async def claim(
        self,
        scope: str,
        key: str,
        now: float,
        *,
        ttl: float = IDEMPOTENCY_TTL,
        stale_after: float = STALE_AFTER,
        people: Sequence[str] = (),
    ) -> Claim:
        claims = await self.claims([(scope, key, people)], now, ttl=ttl, stale_after=stale_after)
        return claims[0]

    async def claims(
        self,
        wanted: Sequence[tuple[str, str, Sequence[str]]],
        now: float,
        *,
        ttl: float = IDEMPOTENCY_TTL,
        stale_after: float = STALE_AFTER,
    ) -> list[Claim]:
        owners = [unique_hex(16) for _ in wanted]
        persons = [person_column(self.sealer, people) for _, _, people in wanted]
        if (new := q.CLAIM_NEW.get(len(wanted))) is not None:
            params = q.claim_new_params([(scope, key, owner, person) for (scope, key, _), owner,
                                         person in zip(wanted, owners, persons, strict=True)],
                                        now)  # fmt: skip
            inserted, _ = await self._write(new, params)
            if inserted == len(wanted):
                return [Claim("won", scope, key, owner)
                        for (scope, key, _), owner in zip(wanted, owners, strict=True)]  # fmt: skip
        results = await self._write_each([
            (q.CLAIM, {"scope": scope, "key": key, "owner": owner, "now": now,
                       "stale_before": now - stale_after, "expired_before": now - ttl,
                       "person": person})
            for (scope, key, _), owner, person in zip(wanted, owners, persons, strict=True)
        ])  # fmt: skip
        claims = []
        for (scope, key, _), owner, (_, rows) in zip(wanted, owners, results, strict=True):
            got_owner, state, status, stored = rows[0]
            if got_owner == owner:
                claims.append(Claim("won", scope, key, owner))
            elif state == "done":
                body = open_text(self.sealer, stored)
                claims.append(Claim("done", scope, key, got_owner, status, body))
            else:
                claims.append(Claim("busy", scope, key, got_owner))
        return claims

    async def wait_for(
        self,
        scope: str,
        key: str,
        *,
        timeout: float,
        poll: float = 0.05,
        ttl: float = IDEMPOTENCY_TTL,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> Claim:
        # Polling the database (not an in-process event) is what makes this work when the
        # first request is being served by another process.
        deadline = time.monotonic() + timeout
        while True:
            claim = await self.claim(scope, key, clock(), ttl=ttl, stale_after=stale_after)
            if not claim.busy or time.monotonic() >= deadline:
                return claim
            await asyncio.sleep(poll)

    async def complete(
        self, claim: Claim, status: int, body: str, *, people: Sequence[str] = ()
    ) -> bool:
        changed, _ = await self._write(
            q.COMPLETE, self._completion_params(Completion(claim, status, body, tuple(people)))
        )
        return changed == 1

    def _completion_params(self, done: Completion, known: dict[str, str] | None = None) -> Params:
        claim = done.claim
        return {
            "scope": claim.scope,
            "key": claim.key,
            "owner": claim.owner,
            "status": done.status,
            "body": seal_text(self.sealer, done.body),
            "person": person_column(self.sealer, done.people, known=known),
        }

    async def release(self, claim: Claim) -> None:
        await self._write(
            q.RELEASE,
            {"scope": claim.scope, "key": claim.key, "owner": claim.owner},
        )

    async def purge_idempotency(self, before: float) -> int:
        return await self._purge(q.PURGE_IDEMPOTENCY, before)

    # -- deliveries --------------------------------------------------------------------------

    async def record_delivery(
        self, record: DeliveryRecord, *, completions: Sequence[Completion] = ()
    ) -> str:
        if not record.id:
            record = replace(record, id=new_delivery_id(record.at))
        await self._log.submit((record, completions))
        return record.id

    async def _flush_deliveries(
        self, entries: Sequence[tuple[DeliveryRecord, Sequence[Completion]]]
    ) -> None:
        records = [record for record, _ in entries]
        known: dict[str, str] = {}  # blind indexes, each computed once for the batch
        rows = [q.delivery_params(r, self.sealer, known) for r in records]
        done = [self._completion_params(c, known) for _, cs in entries for c in cs]
        chains, fixed = q.resolve_params(records, rows)
        # One transaction: the stored answers are durable exactly when the log entry is.
        await self._write_batch(
            [
                (q.INSERT_DELIVERY, rows),
                (q.COUNT_HOOK, q.hook_counts(records)),
                (q.RESOLVE, chains),
                (q.RESOLVE_FIXED, fixed),
                (q.COMPLETE, done),
            ]
        )

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        rows = await self._read(
            f"SELECT {q.DELIVERY_COLUMNS} FROM deliveries WHERE id = :id", {"id": delivery_id}
        )
        return q.delivery_from_row(rows[0], self.sealer) if rows else None

    async def list_deliveries(
        self,
        *,
        hook_id: str | None = None,
        outcome: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: str | None = None,
        limit: int = 50,
        error_code: str | None = None,
        error_field: str | None = None,
        open_only: bool = False,
    ) -> list[DeliveryRecord]:
        filters = {
            q.OPEN_FAILURE: True if open_only else None,
            "hook_id = :hook_id": hook_id,
            "outcome = :outcome": outcome,
            "source = :source": source,
            "at >= :since": since,
            "at < :until": until,
            "id < :before_id": before_id,
            "error_code = :error_code": error_code,
            # "" asks for failures that name no field (a NULL never equals anything).
            "error_field = :error_field": error_field or None,
            "error_field IS NULL": True if error_field == "" else None,
        }
        params = {"hook_id": hook_id, "outcome": outcome, "source": source, "since": since}
        params.update({"until": until, "before_id": before_id, "limit": limit})
        params.update({"error_code": error_code, "error_field": error_field or None})
        where = " AND ".join(clause for clause, value in filters.items() if value is not None)
        rows = await self._read(
            f"SELECT {q.DELIVERY_COLUMNS} FROM deliveries"
            f"{' WHERE ' + where if where else ''} ORDER BY id DESC LIMIT :limit",
            {k: v for k, v in params.items() if v is not None},
        )
        return [q.delivery_from_row(row, self.sealer) for row in rows]

    async def failure_groups(self, since: float, *, limit: int = 50) -> list[FailureGroup]:
        rows = await self._read(q.FAILURE_GROUPS, {"since": since, "limit": limit})
        return [
            FailureGroup(q.delivery_from_row(row, self.sealer), int(row[-2]), row[-1])
            for row in rows
        ]

    async def open_failures(self, since: float) -> int:
        rows = await self._read(
            f"SELECT COUNT(*) FROM deliveries WHERE {q.OPEN_FAILURE} AND at >= :since",
            {"since": since},
        )
        return int(rows[0][0])

    async def dismiss_failure(self, delivery_id: str, at: float) -> bool:
        changed, _ = await self._write(q.DISMISS, {"id": delivery_id, "at": at, "by": DISMISSED})
        return changed == 1

    async def delivery_stats(self, since: float, *, hook_id: str | None = None) -> DeliveryStats:
        where = "at >= :since" + (" AND hook_id = :hook_id" if hook_id is not None else "")
        params = {"since": since, "hook_id": hook_id, "sample": q.STATS_SAMPLE}
        params = {k: v for k, v in params.items() if v is not None}
        counts = await self._read(
            f"SELECT outcome, COUNT(*) FROM deliveries WHERE {where} GROUP BY outcome", params
        )
        latencies = await self._read(
            f"SELECT latency_ms FROM deliveries WHERE {where} ORDER BY id DESC LIMIT :sample",
            params,
        )
        ordered = sorted(row[0] for row in latencies)
        by_outcome = {row[0]: int(row[1]) for row in counts}
        return DeliveryStats(
            total=sum(by_outcome.values()),
            by_outcome=by_outcome,
            p50_ms=q.percentile(ordered, 0.50),
            p95_ms=q.percentile(ordered, 0.95),
        )

    async def delivery_hours(self, since: float) -> dict[int, dict[str, int]]:
        # Integer arithmetic buckets the same way in SQLite and PostgreSQL (times >= since).
        rows = await self._read(
            "SELECT (CAST(at AS BIGINT) - :since) / 3600 AS hour, outcome, COUNT(*) "
            "FROM deliveries WHERE at >= :since GROUP BY hour, outcome",
            {"since": int(since)},
        )
        hours: dict[int, dict[str, int]] = {}
        for hour, outcome, count in rows:
            hours.setdefault(int(hour), {})[outcome] = int(count)
        return hours

    async def purge_deliveries(self, before: float) -> int:
        return await self._purge(q.PURGE_DELIVERIES, before)

    # -- failing hooks ---------------------------------------------------------------------

    async def note_hook_failure(
        self, hook_id: str, at: float, *, realert_after: float = 3600.0
    ) -> HookFailing:
        alert_id = unique_hex(16)
        _, rows = await self._write(
            q.NOTE_HOOK_FAILURE,
            {"id": hook_id, "at": at, "alert_id": alert_id, "realert_before": at - realert_after},
        )
        since, alerted_at, got_id, failures = rows[0]
        return HookFailing(hook_id, since, alerted_at, int(failures), alert=got_id == alert_id)

    async def clear_hook_failure(self, hook_id: str) -> HookFailing | None:
        _, rows = await self._write(q.CLEAR_HOOK_FAILURE, {"id": hook_id})
        if not rows:
            return None
        since, alerted_at, failures = rows[0]
        return HookFailing(hook_id, since, alerted_at, int(failures))

    async def failing_hooks(self) -> set[str]:
        return {row[0] for row in await self._read(q.FAILING_HOOKS, {})}

    # -- admin sessions ----------------------------------------------------------------------

    async def end_admin_session(self, session_id: str, at: float) -> None:
        await self._write(q.END_ADMIN_SESSION, {"id": session_id, "at": at})

    async def admin_session_ended(self, session_id: str) -> bool:
        return bool(await self._read(q.ADMIN_SESSION_ENDED, {"id": session_id}))

    async def purge_ended_admin_sessions(self, before: float) -> int:
        return await self._purge(q.PURGE_ENDED_ADMIN_SESSIONS, before)

    # -- sign-in attempts --------------------------------------------------------------------

    async def count_login_attempt(
        self, address: str, now: float, window: float
    ) -> tuple[int, float]:
        _, rows = await self._write(
            q.COUNT_LOGIN_ATTEMPT, {"address": address, "now": now, "ended_before": now - window}
        )
        attempts, started = rows[0]
        return int(attempts), float(started)

    async def forget_login_attempts(self, address: str) -> None:
        await self._write(q.FORGET_LOGIN_ATTEMPTS, {"address": address})

    async def purge_login_attempts(self, before: float) -> int:
        return await self._purge(q.PURGE_LOGIN_ATTEMPTS, before)

    async def _purge(self, sql: str, before: float) -> int:
        total = 0
        while True:
            changed, _ = await self._write(sql, {"before": before, "chunk": q.PURGE_CHUNK})
            total += changed
            if changed < q.PURGE_CHUNK:
                return total

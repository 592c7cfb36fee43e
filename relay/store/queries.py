"""The SQL text the store runs, and the mapping between its rows and the record dataclasses.

Everything here is written once for both SQLite and PostgreSQL, with `:name` parameters (the
PostgreSQL backend rewrites them to psycopg's `%(name)s`). Statements are assembled only from
constants in this module; values always travel as parameters, never inside the SQL text.
"""

# ruff: noqa: S608  (see above: no value is ever formatted into SQL)

from __future__ import annotations

import asyncio
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from relay.store.personal import (
    dumps,
    open_bundle,
    open_json,
    open_text,
    person_column,
    seal_columns,
)
from relay.store.records import DeliveryRecord, HookRecord, Outcome, Source

if TYPE_CHECKING:
    from relay.sealing import Sealer

Params = Mapping[str, Any]
Row = tuple[Any, ...]


class Statements(ABC):
    """Statements over a backend's two primitives (SQLStore's, per backend): the base of the
    store's parts that keep their own SQL (relay.store.privacy, outbox, checkouts, spend)."""

    @abstractmethod
    async def _read(self, sql: str, params: Params) -> list[Row]: ...

    @abstractmethod
    async def _write(self, sql: str, params: Params) -> tuple[int, list[Row]]:
        """Run one statement in its own transaction: (rows changed, rows returned)."""

    async def _write_each(
        self, statements: Sequence[tuple[str, Params]]
    ) -> list[tuple[int, list[Row]]]:
        """Several statements, each as `_write` runs it, sent together (SQLite: one trip to
        its writer; PostgreSQL: side by side)."""
        if len(statements) == 1:
            return [await self._write(*statements[0])]
        return list(await asyncio.gather(*(self._write(sql, p) for sql, p in statements)))


# Big purges run in chunks, each its own transaction, so deliveries keep committing meanwhile.
PURGE_CHUNK = 5_000
# Percentiles come from the newest deliveries in the window: plenty for an overview, and the
# query stays cheap however large the log grows.
STATS_SAMPLE = 10_000

HOOK_COLUMNS = (
    "id, template, params, label, created_at, revoked_at, last_used_at, deliveries, failures"
)
DELIVERY_COLUMNS = (
    "id, at, source, hook_id, template, operation, outcome, status, latency_ms, request_id, "
    "error_code, request, passkit_request, passkit_response, replay_of, error_message, "
    "error_field, error_hint, resolved_by, resolved_at"
)
INSERT_DELIVERY = (
    f"INSERT INTO deliveries ({DELIVERY_COLUMNS}, person, fix_key) VALUES (:id, :at, :source, "
    ":hook_id, :template, :operation, :outcome, :status, :latency_ms, :request_id, :error_code, "
    ":request, :passkit_request, :passkit_response, :replay_of, :error_message, :error_field, "
    ":error_hint, NULL, NULL, :person, :fix_key)"
)
# An open failure: failed, not resolved, and not itself a resend (a failed Replay or Edit and
# resend is an attempt at the failure it resends, which stays open; it is not a second one).
OPEN_FAILURE = "outcome = 'failed' AND resolved_by IS NULL AND replay_of IS NULL"
# A success resolves the failures it fixes, in the transaction that logs it: the delivery it
# resends and every resend before it (the `replay_of` chain), and earlier failures on the same
# hook with the same fix key (idempotency key, Stripe event id, or operation and person).
RESOLVE = (
    "UPDATE deliveries SET resolved_by = :id, resolved_at = :at "
    "WHERE outcome = 'failed' AND resolved_by IS NULL AND at <= :at AND id IN ("
    "WITH RECURSIVE chain(id) AS (SELECT CAST(:replay_of AS TEXT) UNION "
    "SELECT d.replay_of FROM deliveries d JOIN chain c ON d.id = c.id "
    "WHERE d.replay_of IS NOT NULL) SELECT id FROM chain "
    # Its own SELECT, not an OR beside the chain: with the OR, SQLite walked every failure
    # in the log (deliveries_outcome) for each success; this looks up the fix key's index.
    "UNION SELECT id FROM deliveries WHERE outcome = 'failed' AND hook_id = :hook_id "
    "AND fix_key = :fix_key)"
)
# The same for a success that resends nothing (most of them): the fix key's look-up alone,
# without the replay chain's recursive query (~10 µs a delivery).
RESOLVE_FIXED = (
    "UPDATE deliveries SET resolved_by = :id, resolved_at = :at "
    "WHERE outcome = 'failed' AND resolved_by IS NULL AND at <= :at "
    "AND hook_id = :hook_id AND fix_key = :fix_key"
)
DISMISS = (
    "UPDATE deliveries SET resolved_by = :by, resolved_at = :at "
    "WHERE id = :id AND outcome = 'failed' AND resolved_by IS NULL"
)
# The delivery log's columns that can hold what a person sent: sealed (relay.store.personal).
SEALED_DELIVERY_COLUMNS = (
    "request",
    "passkit_request",
    "passkit_response",
    "error_message",
    "error_hint",
)
# A hook used but not registered (its row was lost with the database, or another database
# minted it; the URL still works) is registered here from the delivery, with the params its
# signed token carries; a row registered with none before is given them.
COUNT_HOOK = (
    "INSERT INTO hooks (id, template, params, created_at, last_used_at, deliveries, failures) "
    "VALUES (:id, :template, :params, :at, :at, :n, :failed) ON CONFLICT (id) DO UPDATE SET "
    "params = CASE WHEN hooks.params = '{}' THEN :params ELSE hooks.params END, "
    "last_used_at = CASE WHEN hooks.last_used_at IS NULL OR hooks.last_used_at < :at "
    "THEN :at ELSE hooks.last_used_at END, "
    "deliveries = hooks.deliveries + :n, failures = hooks.failures + :failed"
)
ADD_HOOK = (
    "INSERT INTO hooks (id, template, params, label, created_at, revoked_at) "
    "VALUES (:id, :template, :params, :label, :created_at, :revoked_at) "
    "ON CONFLICT (id) DO UPDATE SET template = :template, params = :params, label = :label"
)
REVOKE_HOOK = "UPDATE hooks SET revoked_at = :at WHERE id = :id AND revoked_at IS NULL"
# The caller verified a token, so the hook is real even if its row was lost with the database.
REVOKE_OR_REGISTER_HOOK = (
    "INSERT INTO hooks (id, template, params, created_at, revoked_at) "
    "VALUES (:id, :template, :params, :at, :at) ON CONFLICT (id) DO UPDATE "
    "SET revoked_at = :at WHERE hooks.revoked_at IS NULL"
)
# The claim in one atomic statement: insert a pending row, or take over an existing one that is
# stale (pending, its process died) or expired (done, older than the window); otherwise leave
# it untouched. The row always comes back, and its owner says whether this caller won.
TAKE = (
    "idempotency.created_at < CASE WHEN idempotency.state = 'pending' "
    "THEN :stale_before ELSE :expired_before END"
)
CLAIM = (
    "INSERT INTO idempotency (scope, idem_key, owner, state, created_at, person) "
    "VALUES (:scope, :key, :owner, 'pending', :now, :person) "
    "ON CONFLICT (scope, idem_key) DO UPDATE SET "
    f"person = CASE WHEN {TAKE} THEN :person ELSE idempotency.person END, "
    f"owner = CASE WHEN {TAKE} THEN :owner ELSE idempotency.owner END, "
    f"state = CASE WHEN {TAKE} THEN 'pending' ELSE idempotency.state END, "
    f"status = CASE WHEN {TAKE} THEN NULL ELSE idempotency.status END, "
    f"body = CASE WHEN {TAKE} THEN NULL ELSE idempotency.body END, "
    f"created_at = CASE WHEN {TAKE} THEN :now ELSE idempotency.created_at END "
    "RETURNING owner, state, status, body"
)


# Each new key's parameter names in CLAIM_NEW, by its place: spelt once, not per claim.
_CLAIM_NEW_NAMES = [(f"scope{i}", f"key{i}", f"owner{i}", f"person{i}") for i in range(2)]


def _claim_new(keys: int) -> str:
    rows = ", ".join(
        f"(:{scope}, :{key}, :{owner}, 'pending', :now, :{person})"
        for scope, key, owner, person in _CLAIM_NEW_NAMES[:keys]
    )
    return (
        "INSERT INTO idempotency (scope, idem_key, owner, state, created_at, person) "
        f"VALUES {rows} ON CONFLICT (scope, idem_key) DO NOTHING"
    )


# CLAIM's common case for one or two keys (a delivery's key and its create key) in one
# statement: each key with no row is inserted as pending. When the row count says all were
# new, every claim is won; otherwise CLAIM decides each key (its own rows included: their owner
# comes back). One statement instead of two, and no RETURNING (SQLite buffers those rows).
CLAIM_NEW = {keys: _claim_new(keys) for keys in (1, 2)}


def claim_new_params(claims: Sequence[tuple[str, str, str, str | None]], now: float) -> Params:
    """CLAIM_NEW's parameters for (scope, key, owner, person) of each new key."""
    params: dict[str, Any] = {"now": now}
    for names, values in zip(_CLAIM_NEW_NAMES[: len(claims)], claims, strict=True):
        params.update(zip(names, values, strict=True))
    return params


# Only the claim's owner may complete or release it: after a stale takeover, the slow first
# request must not overwrite or delete the answer of the request that took over.
COMPLETE = (
    "UPDATE idempotency SET state = 'done', status = :status, body = :body, "
    "person = COALESCE(:person, person) "
    "WHERE scope = :scope AND idem_key = :key AND owner = :owner AND state = 'pending'"
)
RELEASE = "DELETE FROM idempotency WHERE scope = :scope AND idem_key = :key AND owner = :owner"
PURGE_IDEMPOTENCY = (
    "DELETE FROM idempotency WHERE (scope, idem_key) IN "
    "(SELECT scope, idem_key FROM idempotency WHERE created_at < :before LIMIT :chunk)"
)
PURGE_DELIVERIES = (
    "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE at < :before LIMIT :chunk)"
)
# Signing out twice (two tabs, a retried POST) keeps the first time.
END_ADMIN_SESSION = (
    "INSERT INTO admin_sessions_ended (session_id, ended_at) VALUES (:id, :at) "
    "ON CONFLICT (session_id) DO NOTHING"
)
ADMIN_SESSION_ENDED = "SELECT 1 FROM admin_sessions_ended WHERE session_id = :id"
PURGE_ENDED_ADMIN_SESSIONS = (
    "DELETE FROM admin_sessions_ended WHERE session_id IN "
    "(SELECT session_id FROM admin_sessions_ended WHERE ended_at < :before LIMIT :chunk)"
)
# One sign-in attempt from an address, counted before its password is checked: the first in a
# window inserts the row, later ones add one; a window that ended starts again at :now. The row
# comes back, so the caller knows how many attempts this one is within its window.
COUNT_LOGIN_ATTEMPT = (
    "INSERT INTO login_attempts (address, window_start, attempts) VALUES (:address, :now, 1) "
    "ON CONFLICT (address) DO UPDATE SET "
    "attempts = CASE WHEN login_attempts.window_start <= :ended_before THEN 1 "
    "ELSE login_attempts.attempts + 1 END, "
    "window_start = CASE WHEN login_attempts.window_start <= :ended_before THEN :now "
    "ELSE login_attempts.window_start END "
    "RETURNING attempts, window_start"
)
FORGET_LOGIN_ATTEMPTS = "DELETE FROM login_attempts WHERE address = :address"
PURGE_LOGIN_ATTEMPTS = (
    "DELETE FROM login_attempts WHERE address IN "
    "(SELECT address FROM login_attempts WHERE window_start < :before LIMIT :chunk)"
)

# A failure of a hook that alerts: the first one inserts the row (and alerts); later ones count,
# and alert again once the last alert is older than :realert_before. The row comes back, and
# its alert_id says whether this call alerts. SET expressions read the row as it was.
NOTE_HOOK_FAILURE = (
    "INSERT INTO hook_alerts (hook_id, failing_since, alerted_at, alert_id, failures) "
    "VALUES (:id, :at, :at, :alert_id, 1) ON CONFLICT (hook_id) DO UPDATE SET "
    "failures = hook_alerts.failures + 1, "
    "alert_id = CASE WHEN hook_alerts.alerted_at <= :realert_before THEN :alert_id "
    "ELSE hook_alerts.alert_id END, "
    "alerted_at = CASE WHEN hook_alerts.alerted_at <= :realert_before THEN :at "
    "ELSE hook_alerts.alerted_at END "
    "RETURNING failing_since, alerted_at, alert_id, failures"
)
# The first success after failures: only one caller gets the row back.
CLEAR_HOOK_FAILURE = (
    "DELETE FROM hook_alerts WHERE hook_id = :id RETURNING failing_since, alerted_at, failures"
)
FAILING_HOOKS = "SELECT hook_id FROM hook_alerts"

# Open failures grouped by cause (error code + field; NULLs group together in both
# databases), each group read with its newest delivery: one query, however long the log.
FAILURE_GROUPS = (
    f"SELECT {', '.join('d.' + c for c in DELIVERY_COLUMNS.split(', '))}, g.n, g.first_at "
    "FROM deliveries d JOIN (SELECT MAX(id) AS newest, COUNT(*) AS n, MIN(at) AS first_at "
    f"FROM deliveries WHERE {OPEN_FAILURE} AND at >= :since "
    "GROUP BY error_code, error_field) g ON d.id = g.newest "
    "ORDER BY d.id DESC LIMIT :limit"
)


def hook_from_row(row: Row) -> HookRecord:
    return HookRecord(
        id=row[0],
        template=row[1],
        params=json.loads(row[2]),
        label=row[3],
        created_at=row[4],
        revoked_at=row[5],
        last_used_at=row[6],
        deliveries=row[7],
        failures=row[8],
    )


def delivery_from_row(row: Row, sealer: Sealer | None = None) -> DeliveryRecord:
    bundle = open_bundle(sealer, row[11])
    if bundle is not None:
        return _delivery(row, **{name: bundle.get(name) for name in SEALED_DELIVERY_COLUMNS})
    return _delivery(
        row,
        request=open_json(sealer, row[11]),
        passkit_request=open_json(sealer, row[12]),
        passkit_response=open_json(sealer, row[13]),
        error_message=open_text(sealer, row[15]),
        error_hint=open_text(sealer, row[17]),
    )


def _delivery(row: Row, **opened: Any) -> DeliveryRecord:
    return DeliveryRecord(
        id=row[0],
        at=row[1],
        source=cast(Source, row[2]),
        hook_id=row[3],
        template=row[4],
        operation=row[5],
        outcome=cast(Outcome, row[6]),
        status=row[7],
        latency_ms=row[8],
        request_id=row[9],
        error_code=row[10],
        replay_of=row[14],
        error_field=row[16],
        resolved_by=row[18],
        resolved_at=row[19],
        **opened,
    )


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def delivery_params(
    r: DeliveryRecord, sealer: Sealer | None = None, known: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at,
        "source": r.source,
        "hook_id": r.hook_id,
        "template": r.template,
        "operation": r.operation,
        "outcome": r.outcome,
        "status": r.status,
        "latency_ms": r.latency_ms,
        "request_id": r.request_id,
        "error_code": r.error_code,
        "replay_of": r.replay_of,
        "error_field": r.error_field,
        "person": person_column(sealer, r.people, r.names, known),
        "fix_key": fix_column(sealer, r.hook_id, r.fix_key),
    } | _sealed_columns(r, sealer)


def _sealed_columns(r: DeliveryRecord, sealer: Sealer | None) -> dict[str, str | None]:
    values = {  # request first: sealed, it holds them all (relay.store.personal.BUNDLE)
        "request": r.request,
        "passkit_request": r.passkit_request,
        "passkit_response": r.passkit_response,
        "error_message": r.error_message,
        "error_hint": r.error_hint,
    }
    if sealer is not None:
        return seal_columns(sealer, values)
    # In clear (a test's or a tool's store), a column each: JSON, or the text as it is.
    return {name: value if name.startswith("error_") else dumps(value)
            for name, value in values.items()}  # fmt: skip


def fix_column(sealer: Sealer | None, hook_id: str | None, fix_key: str | None) -> str | None:
    """The `fix_key` column: a keyed hash (the blind index) of the hook and its fix key, never
    the key itself (an idempotency key may be an email)."""
    if not fix_key:
        return None
    text = f"fix {hook_id or ''} {fix_key}"
    return sealer.blind(text) if sealer else hashlib.sha256(text.encode()).hexdigest()[:32]


def resolve_params(
    records: Sequence[DeliveryRecord], rows: Sequence[Params]
) -> tuple[list[Params], list[Params]]:
    """The RESOLVE rows (successes that resend a delivery) and the RESOLVE_FIXED rows (the
    other successes with a fix key) of a batch, from its `delivery_params` rows (their fix key
    already hashed). Dry runs, skips, ignored ones, and successes with neither resolve nothing."""
    chains: list[Params] = []
    fixed: list[Params] = []
    for r, row in zip(records, rows, strict=True):
        if r.outcome != "ok" or not (r.replay_of or row["fix_key"]):
            continue
        params = {
            "id": r.id,
            "at": r.at,
            "hook_id": r.hook_id or "",
            "fix_key": row["fix_key"] or "",
        }
        if r.replay_of:
            chains.append(params | {"replay_of": r.replay_of})
        else:
            fixed.append(params)
    return chains, fixed


def hook_counts(records: Sequence[DeliveryRecord]) -> list[dict[str, Any]]:
    """One COUNT_HOOK row per hook in a batch: uses, failures and the latest use.

    Summed per hook (one row update instead of one per delivery) and sorted by hook id, so two
    processes' batches lock hook rows in the same order and cannot deadlock. Stripe deliveries
    count on their endpoint's hook, whose template is "stripe" (the event picks the rest).
    """
    counts: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.hook_id is None:
            continue
        count = counts.get(r.hook_id)
        if count is None:
            template = "stripe" if r.source == "stripe" else r.template
            count = counts[r.hook_id] = {"id": r.hook_id, "template": template, "params": {},
                                         "at": r.at, "n": 0, "failed": 0}  # fmt: skip
        if r.hook_params:  # the batch's last settings, written as JSON once per hook below
            count["params"] = r.hook_params
        count["at"] = max(count["at"], r.at)
        count["n"] += 1
        count["failed"] += r.outcome == "failed"
    rows = [counts[hook_id] for hook_id in sorted(counts)]
    for row in rows:
        row["params"] = json.dumps(dict(row["params"]), sort_keys=True)
    return rows

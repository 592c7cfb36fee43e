"""Storage: the hook registry, idempotency keys (and Stripe event ids), the delivery log, and
the admin sessions that signed out.

One small interface, `Store`, with two backends chosen by `DATABASE_URL`:

- `sqlite:///relay.db` (relative), `sqlite:////abs/relay.db`, `sqlite:///:memory:` → SQLite,
  the default: stdlib only, WAL mode, good for one machine (several processes included).
- `postgres://…` (as Heroku sets it) or `postgresql://…` → PostgreSQL, for several dynos.

No call blocks the event loop: SQLite runs on worker threads, PostgreSQL on psycopg's async
driver. `open_store` applies pending migrations unless told not to; `relay migrate` (Heroku's
release phase) does only that.

Idempotency in one paragraph: `claim(scope, key, now)` answers `won` (run the request, then
`complete` it with the answer to replay, or `release` it after a failure worth retrying, such as
a 503, so a retry runs again), `done` (replay `status`/`body`), or `busy` (a concurrent request
holds it: `wait_for` polls until it is done, released or stale, in any process). Hook requests
use the hook id as scope; Stripe uses `"stripe:<hook id>"` with the event id as key, so a refused
Stripe delivery (released) never marks its event as seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from relay.redact import redact
from relay.store.checkouts import CheckoutRecord
from relay.store.outbox import EVENT_STATES, EventState, PassKitEvent
from relay.store.records import (
    DAY,
    DELIVERY_RETENTION,
    DISMISSED,
    IDEMPOTENCY_TTL,
    OUTCOMES,
    STALE_AFTER,
    Claim,
    ClaimState,
    Completion,
    DeliveryRecord,
    DeliveryStats,
    FailureGroup,
    HookFailing,
    HookRecord,
    Outcome,
    Source,
    new_delivery_id,
)
from relay.store.spend import CustomerSpend, SpendEntry

if TYPE_CHECKING:
    from relay.sealing import Sealer
    from relay.store.slots import Slots

__all__ = [
    "DAY",
    "DELIVERY_RETENTION",
    "DISMISSED",
    "EVENT_STATES",
    "IDEMPOTENCY_TTL",
    "OUTCOMES",
    "STALE_AFTER",
    "CheckoutRecord",
    "Claim",
    "ClaimState",
    "Completion",
    "CustomerSpend",
    "DeliveryRecord",
    "DeliveryStats",
    "EventState",
    "FailureGroup",
    "HookFailing",
    "HookRecord",
    "Outcome",
    "PassKitEvent",
    "Source",
    "SpendEntry",
    "Store",
    "new_delivery_id",
    "open_store",
    "redact",
    "sqlite_path",
]


class Store(Protocol):
    """What the app needs from storage. Times are Unix timestamps (float seconds)."""

    sealer: Sealer | None  # seals personal data at rest (relay.store.personal)

    async def migrate(self) -> None:
        """Apply pending schema migrations; a no-op when current, safe in parallel."""

    async def close(self) -> None:
        """Commit queued deliveries, then close every connection."""

    async def ping(self) -> bool:
        """True when the database answers (health checks)."""

    # -- hook registry --

    async def add_hook(self, hook: HookRecord) -> None:
        """Register a minted hook (or update its template, params and label)."""

    async def get_hook(self, hook_id: str) -> HookRecord | None: ...

    async def list_hooks(self, *, include_revoked: bool = True) -> list[HookRecord]:
        """Newest first."""

    async def revoke_hook(
        self,
        hook_id: str,
        at: float,
        *,
        template: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> bool:
        """Revoke; True if this call revoked it. With `template` (the caller verified the
        hook's token), a hook missing from the registry is registered as revoked."""

    async def revoked_hooks(self) -> dict[str, float]:
        """Every revoked hook id and when: small enough to reload every few seconds."""

    # -- idempotency and Stripe event ids --

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
        """Try to take `key`; a done key older than `ttl` or a pending one older than
        `stale_after` (its process died) is taken over. `people`: who the key is about, kept
        as blind indexes so `erase_person` finds the row."""

    async def claims(
        self,
        wanted: Sequence[tuple[str, str, Sequence[str]]],
        now: float,
        *,
        ttl: float = IDEMPOTENCY_TTL,
        stale_after: float = STALE_AFTER,
    ) -> list[Claim]:
        """`claim` for each (scope, key, people), sent together: one trip to the database."""

    async def wait_for(
        self,
        scope: str,
        key: str,
        *,
        timeout: float,
        poll: float = 0.05,
        ttl: float = IDEMPOTENCY_TTL,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = ...,
    ) -> Claim:
        """Claim again every `poll` seconds until not busy or `timeout` passes."""

    async def complete(
        self, claim: Claim, status: int, body: str, *, people: Sequence[str] = ()
    ) -> bool:
        """Store the answer to replay (sealed); False if the claim was taken over meanwhile."""

    async def release(self, claim: Claim) -> None:
        """Forget the key, so the next request with it runs again."""

    async def purge_idempotency(self, before: float) -> int:
        """Delete keys claimed before `before`; returns how many."""

    # -- delivery log --

    async def record_delivery(
        self, record: DeliveryRecord, *, completions: Sequence[Completion] = ()
    ) -> str:
        """Durably record a delivery (group-committed) and count it on its hook; its id.
        `completions` (the delivery's won claims and their answers) are written in the same
        transaction, as `complete` writes them (a claim taken over meanwhile is left alone)."""

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord | None: ...

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
        """Newest first; the next page is `before_id=<last id of this page>`. `error_field=""`
        keeps failures that name no field; `open_only`: open failures only (failed, not
        resolved, not a resend)."""

    async def failure_groups(self, since: float, *, limit: int = 50) -> list[FailureGroup]:
        """Open failures since `since` grouped by cause: error code and field (grouped in the
        database), the group with the newest failure first."""

    async def open_failures(self, since: float) -> int:
        """How many open failures since `since`: failed, not resolved, not a resend."""

    async def dismiss_failure(self, delivery_id: str, at: float) -> bool:
        """Resolve an open failure by the operator's Dismiss; False when it was not open."""

    async def delivery_stats(self, since: float, *, hook_id: str | None = None) -> DeliveryStats:
        """Counts per outcome since `since`, latency percentiles of the newest 10,000."""

    async def delivery_hours(self, since: float) -> dict[int, dict[str, int]]:
        """Counts per outcome for each whole hour since `since` (0 = the first hour)."""

    async def purge_deliveries(self, before: float) -> int:
        """Delete deliveries older than `before` (retention); returns how many."""

    # -- failing hooks (relay.delivery.alerts) --

    async def note_hook_failure(
        self, hook_id: str, at: float, *, realert_after: float = 3600.0
    ) -> HookFailing:
        """Count a failure of `hook_id`; `alert` is True for exactly one caller (in any
        process) on its first failure and then at most once per `realert_after` seconds."""

    async def clear_hook_failure(self, hook_id: str) -> HookFailing | None:
        """The hook works again: forget its failures; the row for exactly one caller, else None."""

    async def failing_hooks(self) -> set[str]:
        """The ids of every hook failing now (a few at most)."""

    # -- PassKit events outbox (relay.store.outbox) --

    async def enqueue_event(self, event: PassKitEvent) -> bool:
        """Store a verified PassKit event to forward; False when its id is stored already."""

    async def claim_events(
        self, owner: str, now: float, *, lease: float, limit: int = 10
    ) -> list[PassKitEvent]:
        """Due events leased to `owner` until `now + lease`: no other process claims them."""

    async def finish_event(
        self,
        event_id: str,
        owner: str,
        *,
        state: EventState,
        next_at: float,
        forwarded_at: float | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a forwarding attempt; False if `owner` lost the lease meanwhile."""

    async def resend_event(self, event_id: str, now: float) -> bool:
        """Forward the event again (the console's Resend); False if it is being sent now."""

    async def get_event(self, event_id: str) -> PassKitEvent | None: ...

    async def list_events(
        self, *, state: EventState | None = None, limit: int = 50
    ) -> list[PassKitEvent]:
        """Newest first."""

    async def last_real_event(self, hook_id: str) -> PassKitEvent | None:
        """The newest event PassKit sent to `hook_id` (not a sample), while it is kept."""

    async def purge_events(self, before: float, chunk: int = 5_000) -> int:
        """Forget forwarded and failed events received before `before`; how many."""

    # -- Stripe Checkout sessions and their passes (relay.store.checkouts) --

    async def save_checkout(self, record: CheckoutRecord) -> None:
        """Record the pass a Checkout session ended with (again: the row is brought up to date)."""

    async def get_checkout(self, session_id: str) -> CheckoutRecord | None: ...

    async def erase_checkouts(self, person_blinds: Sequence[str]) -> int:
        """Delete the records of the person with any of these blind indexes; how many."""

    async def purge_checkouts(self, before: float) -> int:
        """Forget records written before `before`; how many."""

    # -- the spend ledger for tiers from spend (relay.store.spend) --

    async def add_spend(self, entry: SpendEntry) -> bool:
        """Count one Stripe event in its customer's spend; False when it was counted before."""

    async def spend_of(self, customer: str) -> CustomerSpend: ...

    async def set_spend_tier(self, customer: str, person: str, tier: str, at: float) -> None:
        """Remember the tier the relay gave a customer's pass."""

    async def spend_customers(self, limit: int = 200) -> list[CustomerSpend]:
        """The customers who paid or were refunded last, newest first."""

    async def erase_spend(self, person_blinds: Sequence[str]) -> int:
        """Delete the ledger of the person with any of these blind indexes; rows deleted."""

    # -- the console's imports (relay.store.imports) --

    async def save_import(self, job: dict[str, Any], now: float) -> None:
        """Write an import job's state (sealed), keyed by `job["id"]`."""

    async def get_import(self, job_id: str) -> dict[str, Any] | None: ...

    async def import_changed_at(self, job_id: str) -> float | None: ...

    async def touch_import(self, job_id: str, at: float) -> None:
        """A running job's heartbeat."""

    async def recent_imports(self, count: int = 10) -> list[dict[str, Any]]:
        """The newest jobs' states, newest first."""

    async def add_import_part(self, job_id: str, kind: str, data: bytes) -> None:
        """Append `data` (sealed) to the job's `kind` file ("upload" or "failed")."""

    def import_parts(self, job_id: str, kind: str) -> AsyncIterator[bytes]:
        """The job's `kind` file, a part at a time."""

    async def has_import_part(self, job_id: str, kind: str) -> bool: ...

    async def drop_import_parts(self, job_id: str, kind: str) -> None: ...

    async def note_import_line(self, job_id: str, line: int, state: str) -> None:
        """Note that a run started ("start") or finished ("ok", "failed") a row."""

    async def import_lines(self, job_id: str) -> dict[int, str]: ...

    async def clear_import_lines(self, job_id: str) -> None: ...

    async def delete_import(self, job_id: str) -> None: ...

    async def purge_imports(self, before: float) -> int:
        """Delete the jobs unchanged since `before`; how many."""

    async def erase_imports(self, identifier: str) -> int:
        """Delete every job whose upload or failed rows name `identifier`; files removed."""

    # -- PassKit's rate (relay.passkit.outbound) --

    def outbound_slots(self) -> Slots | None:
        """The call slots toward PassKit that every process on this database shares; None
        when the backend serves one process (SQLite: the limiter keeps them in memory)."""

    # -- personal data (relay.store.privacy) --

    async def person_deliveries(self, identifier: str, limit: int = 1000) -> list[DeliveryRecord]:
        """The newest deliveries about `identifier` (found by its blind index), opened."""

    async def deliveries_by_index(
        self, indexes: Sequence[str], limit: int = 1000
    ) -> list[DeliveryRecord]:
        """The newest deliveries whose `person` column holds every one of these blind indexes
        (a person's, or the words of a name: relay.store.personal), opened."""

    async def erase_person(self, identifier: str) -> dict[str, int]:
        """Delete every delivery, stored answer and PassKit event about `identifier` (an
        email, external id or Stripe customer id); how many per table."""

    async def reseal_all(self, batch: int = 500) -> dict[str, int]:
        """Re-seal every sealed value under the first key; rows rewritten per table."""

    # -- admin sessions --

    async def end_admin_session(self, session_id: str, at: float) -> None:
        """Record that the admin session `session_id` signed out at `at` (again: a no-op)."""

    async def admin_session_ended(self, session_id: str) -> bool:
        """True once `end_admin_session` ran for `session_id`, in any process."""

    # -- sign-in attempts (relay.admin.session.LoginLimiter) --

    async def count_login_attempt(
        self, address: str, now: float, window: float
    ) -> tuple[int, float]:
        """Count one sign-in attempt from `address`, atomically across processes: how many
        attempts its window holds now (this one included) and when that window started. A
        window that started `window` seconds ago or more starts again at `now`."""

    async def forget_login_attempts(self, address: str) -> None:
        """`address` signed in: its attempts start again from none."""

    async def purge_login_attempts(self, before: float) -> int:
        """Forget addresses whose window started before `before`; how many."""

    async def purge_ended_admin_sessions(self, before: float) -> int:
        """Forget sessions that ended before `before` (their cookies have expired by then);
        returns how many."""


def sqlite_path(database_url: str) -> str:
    """The file a `sqlite:///…` URL names: three slashes relative, four absolute."""
    if not database_url.startswith("sqlite:///") or database_url == "sqlite:///":
        raise ValueError(
            "DATABASE_URL for SQLite must look like sqlite:///relay.db (relative), "
            "sqlite:////var/data/relay.db (absolute) or sqlite:///:memory:."
        )
    return database_url.removeprefix("sqlite:///")


async def open_store(
    database_url: str, *, migrate: bool = True, sealer: Sealer | None = None
) -> Store:
    """Connect to the database `database_url` names and (by default) bring its schema up to date.
    With `sealer`, personal data is sealed on the way in and opened on the way out
    (relay.store.personal); without, sealed values read as None."""
    store: Store
    if database_url.startswith(("postgres://", "postgresql://")):
        # Imported here so a SQLite deployment never loads the PostgreSQL driver.
        from relay.store.postgres import PostgresStore

        postgres = PostgresStore(database_url)
        try:
            await postgres.open()
        except BaseException:
            await postgres.close()
            raise
        store = postgres
    elif database_url.startswith("sqlite:"):
        from relay.store.sqlite import SQLiteStore

        sqlite = SQLiteStore(sqlite_path(database_url))
        await sqlite.open()
        store = sqlite
    else:
        raise ValueError("DATABASE_URL must start with sqlite:///, postgres:// or postgresql://.")
    store.sealer = sealer
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store

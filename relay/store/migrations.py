"""Versioned schema migrations, written once for both SQLite and PostgreSQL.

Each migration is a version number and a list of statements; a backend applies the missing ones
in one transaction (DDL is transactional in both databases) and records them in
`schema_migrations`, so running `relay migrate` twice, or two processes at once, changes nothing
the second time. Never edit a released migration: append a new one.

Only the column types differ between the two dialects, so the statements name them as
placeholders: `{float}` for timestamps and latencies, `{bigint}` for counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"float": "REAL", "bigint": "INTEGER"},
    "postgres": {"float": "DOUBLE PRECISION", "bigint": "BIGINT"},
}

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, applied_at {float} NOT NULL)"
)

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            # The hook registry. Params and template duplicate what the signed URL holds: the
            # URL keeps working without this row, the row adds revocation and statistics.
            """CREATE TABLE hooks (
                id TEXT PRIMARY KEY,
                template TEXT NOT NULL,
                params TEXT NOT NULL DEFAULT '{{}}',
                label TEXT NOT NULL DEFAULT '',
                created_at {float} NOT NULL,
                revoked_at {float},
                last_used_at {float},
                deliveries {bigint} NOT NULL DEFAULT 0,
                failures {bigint} NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX hooks_revoked ON hooks (revoked_at) WHERE revoked_at IS NOT NULL",
            # Idempotency keys and Stripe event ids: one row per (scope, key) while it is
            # pending or done; a released key has no row at all.
            """CREATE TABLE idempotency (
                scope TEXT NOT NULL,
                idem_key TEXT NOT NULL,
                owner TEXT NOT NULL,
                state TEXT NOT NULL,
                status INTEGER,
                body TEXT,
                created_at {float} NOT NULL,
                PRIMARY KEY (scope, idem_key)
            )""",
            "CREATE INDEX idempotency_created ON idempotency (created_at)",
            # The delivery log. Ids sort by time (see records.new_delivery_id), so pages are
            # read by id alone; JSON columns are TEXT because nothing queries inside them.
            """CREATE TABLE deliveries (
                id TEXT PRIMARY KEY,
                at {float} NOT NULL,
                source TEXT NOT NULL,
                hook_id TEXT,
                template TEXT NOT NULL,
                operation TEXT NOT NULL,
                outcome TEXT NOT NULL,
                status INTEGER NOT NULL,
                latency_ms {float} NOT NULL,
                request_id TEXT NOT NULL,
                error_code TEXT,
                request TEXT,
                passkit_request TEXT,
                passkit_response TEXT,
                replay_of TEXT
            )""",
            "CREATE INDEX deliveries_at ON deliveries (at)",
            "CREATE INDEX deliveries_hook ON deliveries (hook_id, id)",
            "CREATE INDEX deliveries_outcome ON deliveries (outcome, id)",
        ],
    ),
    (
        2,
        [
            # The friendly message a failure answered (or why a delivery was skipped), so the
            # admin console can show what the Zapier or Make user saw.
            "ALTER TABLE deliveries ADD COLUMN error_message TEXT",
        ],
    ),
    (
        3,
        [
            # Admin sessions signed out before their cookie expired: every admin request looks
            # its session id up here, so a copied cookie dies with the sign-out in every
            # process. Only dead ids are kept; rows older than the cookie's life are purged.
            """CREATE TABLE admin_sessions_ended (
                session_id TEXT PRIMARY KEY,
                ended_at {float} NOT NULL
            )""",
            "CREATE INDEX admin_sessions_ended_at ON admin_sessions_ended (ended_at)",
        ],
    ),
    (
        4,
        [
            # Hooks that are failing (relay.delivery.alerts): a row from a hook's first failure to
            # its next success. `alert_id` names the call that last decided to alert, so two
            # processes never both alert for the same hook in the same hour.
            """CREATE TABLE hook_alerts (
                hook_id TEXT PRIMARY KEY,
                failing_since {float} NOT NULL,
                alerted_at {float} NOT NULL,
                alert_id TEXT NOT NULL,
                failures {bigint} NOT NULL DEFAULT 0
            )""",
        ],
    ),
    (
        5,
        [
            # Which field a failure was about and the hint its sender was given, so the console
            # can group failures by cause (hook + error + field) and say the fix in words.
            "ALTER TABLE deliveries ADD COLUMN error_field TEXT",
            "ALTER TABLE deliveries ADD COLUMN error_hint TEXT",
            "CREATE INDEX deliveries_failed_at ON deliveries (at) WHERE outcome = 'failed'",
        ],
    ),
    (
        6,
        [
            # PassKit's rate, shared by every process (relay.passkit.outbound): one row, the next
            # free call slot and the end of a pause PassKit asked for (429 Retry-After), as Unix
            # seconds on the database's clock. Only PostgreSQL reads it: on SQLite (one
            # process) the slots live in memory.
            """CREATE TABLE passkit_rate (
                id INTEGER PRIMARY KEY,
                next_at {float} NOT NULL,
                paused_until {float} NOT NULL
            )""",
            "INSERT INTO passkit_rate (id, next_at, paused_until) VALUES (1, 0, 0)",
        ],
    ),
    (
        8,
        [
            # Verified PassKit events to forward to Zapier or Make (relay.store.outbox): a row
            # per event until it is forwarded or given up on; a lease says which process is
            # forwarding it, so two processes never send one event twice.
            """CREATE TABLE passkit_events (
                id TEXT PRIMARY KEY,
                hook_id TEXT NOT NULL,
                event TEXT NOT NULL,
                received_at {float} NOT NULL,
                forward_to TEXT NOT NULL,
                body TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at {float} NOT NULL,
                due_since {float} NOT NULL,
                lease_owner TEXT,
                lease_until {float},
                forwarded_at {float},
                last_status INTEGER,
                last_error TEXT
            )""",
            "CREATE INDEX passkit_events_due ON passkit_events (state, next_at)",
            "CREATE INDEX passkit_events_received ON passkit_events (received_at)",
        ],
    ),
    (
        9,
        [
            # Stripe Checkout sessions whose pass the relay issued or found (relay.web.checkout):
            # the success page reads its pass here, by the session id Stripe puts in its URL.
            # `person` is the blind index of the customer's email (relay.sealing), so
            # `relay erase` finds their rows; no email or name is kept in clear.
            """CREATE TABLE checkouts (
                session_id TEXT PRIMARY KEY,
                hook_id TEXT NOT NULL,
                pass_id TEXT NOT NULL,
                pass_url TEXT NOT NULL,
                program_id TEXT,
                program_name TEXT,
                person TEXT,
                created_at {float} NOT NULL
            )""",
            "CREATE INDEX checkouts_person ON checkouts (person)",
            "CREATE INDEX checkouts_created ON checkouts (created_at)",
        ],
    ),
    (
        10,
        [
            # The spend ledger for tiers from spend (relay.store.spend): one row per counted
            # Stripe event (the key makes a second copy of an event count nothing), and the
            # tier the relay last gave each customer's pass. `person` is the blind index of
            # the customer's email (relay.sealing), so `relay erase` finds their rows.
            """CREATE TABLE spend_entries (
                event_id TEXT PRIMARY KEY,
                customer TEXT NOT NULL,
                person TEXT NOT NULL,
                currency TEXT NOT NULL,
                amount {bigint} NOT NULL,
                at {float} NOT NULL
            )""",
            "CREATE INDEX spend_entries_customer ON spend_entries (customer, at)",
            "CREATE INDEX spend_entries_person ON spend_entries (person)",
            """CREATE TABLE spend_tiers (
                customer TEXT PRIMARY KEY,
                person TEXT NOT NULL,
                tier TEXT NOT NULL,
                changed_at {float} NOT NULL
            )""",
            "CREATE INDEX spend_tiers_person ON spend_tiers (person)",
        ],
    ),
    (
        11,
        [
            # Who a row is about, as blind indexes (relay.store.personal): " idx1 idx2 ", so
            # `relay erase` finds a person's deliveries, stored answers and forwarded events
            # without their email or id being kept in clear. Erasing is rare: a scan will do.
            "ALTER TABLE deliveries ADD COLUMN person TEXT",
            "ALTER TABLE idempotency ADD COLUMN person TEXT",
            "ALTER TABLE passkit_events ADD COLUMN person TEXT",
        ],
    ),
    (
        12,
        [
            # The console's imports (relay.store.imports): each job's state, its files (the
            # upload and the failed rows, in sealed parts) and which rows a run started and
            # finished. In the relay's own database, so every process of this relay sees them
            # and no other relay does; deleted a day after their last change.
            """CREATE TABLE import_jobs (
                id TEXT PRIMARY KEY,
                created_at {float} NOT NULL,
                changed_at {float} NOT NULL,
                state TEXT NOT NULL
            )""",
            "CREATE INDEX import_jobs_changed ON import_jobs (changed_at)",
            """CREATE TABLE import_parts (
                job_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                seq INTEGER NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (job_id, kind, seq)
            )""",
            """CREATE TABLE import_lines (
                job_id TEXT NOT NULL,
                line INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (job_id, line)
            )""",
        ],
    ),
    (
        13,
        [
            # Sign-in attempts per client address (relay.admin.session.LoginLimiter): counted
            # in one statement before the password is checked, so concurrent guesses from one
            # address share one budget in every process. A row lives one window; the
            # housekeeping purges older ones.
            """CREATE TABLE login_attempts (
                address TEXT PRIMARY KEY,
                window_start {float} NOT NULL,
                attempts {bigint} NOT NULL
            )""",
            "CREATE INDEX login_attempts_start ON login_attempts (window_start)",
        ],
    ),
    (
        14,
        [
            # Failures as a to-do list (relay.admin.failure_pages): a failure is resolved by
            # the success that fixed it (its id in `resolved_by`, "dismissed" for the
            # operator's Dismiss). `fix_key` is the blind index of what a later delivery that
            # fixes it shares with it: the idempotency key, Stripe's event id, or the
            # operation and the person.
            "ALTER TABLE deliveries ADD COLUMN fix_key TEXT",
            "ALTER TABLE deliveries ADD COLUMN resolved_by TEXT",
            "ALTER TABLE deliveries ADD COLUMN resolved_at {float}",
            "CREATE INDEX deliveries_fix ON deliveries (hook_id, fix_key)",
            "CREATE INDEX deliveries_replay_of ON deliveries (replay_of)",
        ],
    ),
    (
        15,
        [
            # Only failures are ever looked up by fix key (the success that fixes one), and
            # only resends have a replay_of: partial indexes spare every other delivery two
            # index inserts (issue 24: the writer's CPU per delivery).
            "DROP INDEX deliveries_fix",
            "CREATE INDEX deliveries_fix ON deliveries (hook_id, fix_key) WHERE outcome = 'failed'",
            "DROP INDEX deliveries_replay_of",
            "CREATE INDEX deliveries_replay_of ON deliveries (replay_of) "
            "WHERE replay_of IS NOT NULL",
        ],
    ),
]


def render(statement: str, dialect: Dialect) -> str:
    return statement.format(**_TYPES[dialect])


def pending(applied: set[int], dialect: Dialect) -> Iterator[tuple[int, list[str]]]:
    """The migrations not yet applied, oldest first, rendered for `dialect`."""
    for version, statements in MIGRATIONS:
        if version not in applied:
            yield version, [render(s, dialect) for s in statements]

"""Retention: forget deliveries and idempotency keys past their configured age, and signed-out
admin sessions once their cookies have expired anyway.

Runs once at start-up and then hourly in every process; the deletes are chunked and idempotent,
so processes sharing one database may run them at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from relay.settings import ADMIN_SESSION_MAX_AGE, Settings
from relay.store import DAY, Store
from relay.store.handle import StoreHandle
from relay.store.imports import KEEP as IMPORT_KEEP

log = logging.getLogger("relay")
EVERY = 3600.0


async def purge_expired(store: Store, settings: Settings, now: float) -> tuple[int, int]:
    """Delete what retention allows; returns (deliveries, idempotency keys) deleted."""
    deliveries = await store.purge_deliveries(now - settings.retention_days * DAY)
    keys = await store.purge_idempotency(now - settings.idempotency_days * DAY)
    # A success page is opened minutes after the payment: its record need not outlive the log.
    await store.purge_checkouts(now - settings.retention_days * DAY)
    # A session that ended longer ago than a cookie lives has no cookie left to refuse.
    await store.purge_ended_admin_sessions(now - ADMIN_SESSION_MAX_AGE)
    # An import's files (names, emails) outlive its last change by a day, no more.
    await store.purge_imports(now - IMPORT_KEEP)
    # Sign-in attempts count within a few minutes; a day-old count limits nothing.
    await store.purge_login_attempts(now - DAY)
    return deliveries, keys


async def run_forever(
    handle: StoreHandle, settings: Settings, clock: Callable[[], float], every: float = EVERY
) -> None:
    while True:
        try:
            deliveries, keys = await purge_expired(await handle.get(), settings, clock())
            if deliveries or keys:
                log.info("retention: deleted %d deliveries, %d idempotency keys", deliveries, keys)
        except Exception:
            # The database may be briefly away (failover, restart): try again next round.
            log.exception("retention clean-up failed")
        await asyncio.sleep(every)

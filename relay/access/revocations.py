"""Which hooks are revoked, as every process sees it within a few seconds.

The signed token stays valid forever by itself, so revocation lives in the database. Asking it
on every delivery would put a query on the hot path; instead each process keeps the (small) set
of revoked hook ids and reloads it when it is older than `ttl`. A revoke through any process or
`relay revoke` therefore takes effect everywhere within `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from relay.errors import RevokedToken

RELOAD_AFTER = 2.0


class RevocationCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[dict[str, float]]],
        *,
        ttl: float = RELOAD_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def revoked(self) -> dict[str, float]:
        if self._fresh():
            return self._revoked
        async with self._lock:  # one reload for a burst of requests, not one each
            if not self._fresh():
                self._revoked = await self._load()
                self._loaded_at = self._clock()
        return self._revoked

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < self._ttl

    def forget(self) -> None:
        """Reload on next use (this process just revoked something)."""
        self._loaded_at = None

    async def check(self, hook_id: str) -> None:
        if hook_id in await self.revoked():
            raise RevokedToken(
                "This hook URL has been revoked by the relay's operator.",
            )

"""The app's store, opened on first use or at start-up, whichever comes first.

The app factory is synchronous (uvicorn's `--factory` calls it) while opening a store is not,
and tests drive the app over ASGI without a lifespan. So the factory builds a handle: the
lifespan opens it at boot (a bad DATABASE_URL then stops the start, with migrations applied
before the first request) and closes it at shutdown; without a lifespan the first request opens
it.
"""

from __future__ import annotations

import asyncio

from relay.sealing import Sealer
from relay.store import Store, open_store


class StoreHandle:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        store: Store | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._url = database_url
        self._store = store
        self._sealer = sealer
        if store is not None and store.sealer is None:
            store.sealer = sealer  # a store handed in (tests) seals like the app's own
        self._owned = store is None  # a store handed in is closed by whoever opened it
        self._lock = asyncio.Lock()

    async def get(self) -> Store:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    assert self._url is not None
                    self._store = await open_store(self._url, sealer=self._sealer)
        return self._store

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None and self._owned:
            await store.close()

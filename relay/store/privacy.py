"""Erasing one person, and re-sealing everything under the newest key (SQLStore's side).

`erase_person` deletes the rows whose `person` column holds one of the person's blind indexes
(under every key, so a rotation loses nothing); delivery rows logged before the column existed
have none, so those are opened and searched in batches too. `reseal_all` walks each table with
sealed columns in keyset pages and rewrites every value not sealed under the first key (a value
stored in clear before sealing included), each page its own transaction.
"""

# ruff: noqa: S608  (statements are built from the constants below; values are parameters)

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from relay.sealing import Sealer, normalised
from relay.store.personal import open_text, person_patterns, person_where
from relay.store.queries import (
    DELIVERY_COLUMNS,
    SEALED_DELIVERY_COLUMNS,
    Statements,
    delivery_from_row,
)
from relay.store.records import DeliveryRecord

# Each table with sealed columns: its key columns (pages are read in their order) and the
# sealed ones.
SEALED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "deliveries": (("id",), SEALED_DELIVERY_COLUMNS),
    "idempotency": (("scope", "idem_key"), ("body",)),
    "passkit_events": (("id",), ("body", "last_error")),
}
# Where a person is erased from, in the words `relay erase` prints.
PLACES = {
    "deliveries": "deliveries in the log",
    "idempotency": "stored answers (idempotency)",
    "passkit_events": "PassKit events (outbox)",
}
BATCH = 500


class NoKeys(Exception):
    """The store was opened without the keys: it can neither find nor re-seal anyone."""


class PersonalData(Statements):
    sealer: Sealer | None

    def _keys(self) -> Sealer:
        if self.sealer is None:
            raise NoKeys("this store was opened without the relay's keys")
        return self.sealer

    async def person_deliveries(self, identifier: str, limit: int = 1000) -> list[DeliveryRecord]:
        """The newest deliveries about `identifier`, opened (what PassKit was sent for them)."""
        patterns = person_patterns(self._keys(), identifier)
        rows = await self._read(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {person_where(patterns)} "
            "ORDER BY id DESC LIMIT :n",
            {**patterns, "n": limit},
        )
        return [delivery_from_row(row, self.sealer) for row in rows]

    async def deliveries_by_index(
        self, indexes: Sequence[str], limit: int = 1000
    ) -> list[DeliveryRecord]:
        if not indexes:
            return []
        patterns = {f"p{i}": f"% {index} %" for i, index in enumerate(indexes)}
        where = " AND ".join(f"person LIKE :{name}" for name in patterns)
        rows = await self._read(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY id DESC LIMIT :n",
            {**patterns, "n": limit},
        )
        return [delivery_from_row(row, self.sealer) for row in rows]

    async def erase_person(self, identifier: str) -> dict[str, int]:
        """Delete every row about `identifier` (an email, an external id, a Stripe customer
        id); how many from each table (keys of PLACES)."""
        patterns = person_patterns(self._keys(), identifier)
        where = person_where(patterns)
        erased = {}
        for table in SEALED:
            changed, _ = await self._write(f"DELETE FROM {table} WHERE {where}", patterns)
            erased[table] = changed
        erased["deliveries"] += await self._erase_unindexed(identifier)
        return erased

    async def _erase_unindexed(self, identifier: str) -> int:
        """Delivery rows from before the `person` column: read in clear or opened, searched."""
        sealer, wanted = self._keys(), normalised(identifier)
        columns = ", ".join(SEALED_DELIVERY_COLUMNS)
        after, erased = "", 0
        while True:
            rows = await self._read(
                f"SELECT id, {columns} FROM deliveries WHERE person IS NULL AND id > :after "
                "ORDER BY id LIMIT :n",
                {"after": after, "n": BATCH},
            )
            for row in rows:
                texts = (open_text(sealer, value) for value in row[1:])
                if any(wanted in text.casefold() for text in texts if text):
                    changed, _ = await self._write(
                        "DELETE FROM deliveries WHERE id = :id", {"id": row[0]}
                    )
                    erased += changed
            if len(rows) < BATCH:
                return erased
            after = rows[-1][0]

    async def reseal_all(self, batch: int = BATCH) -> dict[str, int]:
        """Re-seal every value not sealed under the first key; how many rows per table."""
        return {table: await self._reseal(table, batch) for table in SEALED}

    async def _reseal(self, table: str, batch: int) -> int:
        sealer = self._keys()
        keys, sealed = SEALED[table]
        key_list, page = ", ".join(keys), ", ".join(f":k{i}" for i in range(len(keys)))
        where_key = " AND ".join(f"{k} = :k{i}" for i, k in enumerate(keys))
        resealed, last = 0, cast("tuple[Any, ...] | None", None)
        while True:
            after = f" WHERE ({key_list}) > ({page})" if last is not None else ""
            params = {f"k{i}": v for i, v in enumerate(last or ())}
            rows = await self._read(
                f"SELECT {key_list}, {', '.join(sealed)} FROM {table}{after} "
                f"ORDER BY {key_list} LIMIT :n",
                {**params, "n": batch},
            )
            for row in rows:
                key, values = row[: len(keys)], row[len(keys) :]
                stale = [
                    (column, value)
                    for column, value in zip(sealed, values, strict=True)
                    if value is not None and not sealer.sealed_with_first_key(value)
                ]
                if not stale:
                    continue
                sets = ", ".join(f"{column} = :v{i}" for i, (column, _) in enumerate(stale))
                new = {f"v{i}": sealer.reseal(value) for i, (_, value) in enumerate(stale)}
                key_params = {f"k{i}": v for i, v in enumerate(key)}
                await self._write(f"UPDATE {table} SET {sets} WHERE {where_key}", new | key_params)
                resealed += 1
            if len(rows) < batch:
                return resealed
            last = tuple(rows[-1][: len(keys)])

"""The console's imports at rest (migration 12): each job's state (sealed JSON), its files in
sealed parts (`upload`: the CSV as it was uploaded, 1 MB a part; `failed`: one part per failed
row) and which rows a run started and finished (`import_lines`: line numbers only).

Kept in the relay's own database, so every process (and dyno) of this relay can show and carry
on an import, and no other relay, even on the same machine, can list or read one. A job is
deleted whole a day after its last change (`purge_imports`), or by `relay erase` when any of
its files names the person (`erase_imports`: files are transient, so the whole job goes).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from relay.sealing import Sealer, SealError, normalised
from relay.store.queries import Statements

SAVE = (
    "INSERT INTO import_jobs (id, created_at, changed_at, state) "
    "VALUES (:id, :created_at, :changed_at, :state) ON CONFLICT (id) DO UPDATE "
    "SET changed_at = excluded.changed_at, state = excluded.state"
)
GET = "SELECT state FROM import_jobs WHERE id = :id"
CHANGED = "SELECT changed_at FROM import_jobs WHERE id = :id"
TOUCH = "UPDATE import_jobs SET changed_at = :at WHERE id = :id"
RECENT = "SELECT state FROM import_jobs ORDER BY created_at DESC LIMIT :n"
ALL_IDS = "SELECT id FROM import_jobs ORDER BY id"
ADD_PART = (
    "INSERT INTO import_parts (job_id, kind, seq, body) VALUES (:job_id, :kind, "
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM import_parts WHERE job_id = :job_id AND kind = :kind),"
    " :body)"
)
PART = (
    "SELECT seq, body FROM import_parts WHERE job_id = :job_id AND kind = :kind AND seq > :after "
    "ORDER BY seq LIMIT 1"
)
HAS_PART = "SELECT 1 FROM import_parts WHERE job_id = :job_id AND kind = :kind LIMIT 1"
DROP_PARTS = "DELETE FROM import_parts WHERE job_id = :job_id AND kind = :kind"
NOTE = (
    "INSERT INTO import_lines (job_id, line, state) VALUES (:job_id, :line, :state) "
    "ON CONFLICT (job_id, line) DO UPDATE SET state = excluded.state"
)
LINES = "SELECT line, state FROM import_lines WHERE job_id = :job_id"
CLEAR_LINES = "DELETE FROM import_lines WHERE job_id = :job_id"
OLD = "SELECT id FROM import_jobs WHERE changed_at < :before"
DELETE = (
    "DELETE FROM import_parts WHERE job_id = :id",
    "DELETE FROM import_lines WHERE job_id = :id",
    "DELETE FROM import_jobs WHERE id = :id",
)
KINDS = ("upload", "failed")  # an import's files
KEEP = 86_400.0  # seconds an import outlives its last change: long enough to get the failed rows


class ImportFiles(Statements):
    """The imports' statements over a backend's primitives (SQLStore's)."""

    sealer: Sealer | None

    def _import_keys(self) -> Sealer:
        if self.sealer is None:
            raise SealError("imports are kept sealed: this store was opened without the keys")
        return self.sealer

    async def save_import(self, job: dict[str, Any], now: float) -> None:
        """Write a job's state (sealed: it names the file and shows bad rows)."""
        state = self._import_keys().seal(json.dumps(job))
        await self._write(SAVE, {"id": job["id"], "created_at": job["created"],
                                 "changed_at": now, "state": state})  # fmt: skip

    async def get_import(self, job_id: str) -> dict[str, Any] | None:
        rows = await self._read(GET, {"id": job_id})
        return self._job(rows[0][0]) if rows else None

    async def import_changed_at(self, job_id: str) -> float | None:
        rows = await self._read(CHANGED, {"id": job_id})
        return float(rows[0][0]) if rows else None

    async def touch_import(self, job_id: str, at: float) -> None:
        """A running job's heartbeat: it is alive, and not old."""
        await self._write(TOUCH, {"id": job_id, "at": at})

    async def recent_imports(self, count: int = 10) -> list[dict[str, Any]]:
        rows = await self._read(RECENT, {"n": count})
        return [job for (state,) in rows if (job := self._job(state)) is not None]

    def _job(self, state: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = json.loads(self._import_keys().open(state))
        except (SealError, ValueError):
            return None  # sealed under a key since dropped: as if gone
        return job

    async def add_import_part(self, job_id: str, kind: str, data: bytes) -> None:
        """Append `data` to the job's `kind` file (one writer per file at a time)."""
        body = self._import_keys().seal_bytes(data)
        await self._write(ADD_PART, {"job_id": job_id, "kind": kind, "body": body})

    async def import_parts(self, job_id: str, kind: str) -> AsyncIterator[bytes]:
        """The job's `kind` file, a part at a time (never the whole file in memory)."""
        sealer, after = self._import_keys(), 0
        while rows := await self._read(PART, {"job_id": job_id, "kind": kind, "after": after}):
            after, body = rows[0]
            yield sealer.open_bytes(body)

    async def has_import_part(self, job_id: str, kind: str) -> bool:
        return bool(await self._read(HAS_PART, {"job_id": job_id, "kind": kind}))

    async def drop_import_parts(self, job_id: str, kind: str) -> None:
        await self._write(DROP_PARTS, {"job_id": job_id, "kind": kind})

    async def note_import_line(self, job_id: str, line: int, state: str) -> None:
        await self._write(NOTE, {"job_id": job_id, "line": line, "state": state})

    async def import_lines(self, job_id: str) -> dict[int, str]:
        """Each line a run noted → its last state ("start", "ok", "failed")."""
        return {int(line): str(state) for line, state in
                await self._read(LINES, {"job_id": job_id})}  # fmt: skip

    async def clear_import_lines(self, job_id: str) -> None:
        await self._write(CLEAR_LINES, {"job_id": job_id})

    async def delete_import(self, job_id: str) -> None:
        await self._write_all(job_id)

    async def purge_imports(self, before: float) -> int:
        """Delete the jobs nobody touched since `before` (a running one beats every few
        seconds, so it is never among them); how many."""
        old = await self._read(OLD, {"before": before})
        for (job_id,) in old:
            await self._write_all(job_id)
        return len(old)

    async def erase_imports(self, identifier: str) -> int:
        """Delete every job one of whose files has a cell equal to `identifier` (compared as
        blind indexes compare: case and spacing aside); how many files went."""
        wanted, removed = normalised(identifier), 0
        if not wanted:
            return 0
        for (job_id,) in await self._read(ALL_IDS, {}):
            files = [kind for kind in KINDS if await self.has_import_part(job_id, kind)]
            for kind in files:
                if await self._names(job_id, kind, wanted):
                    await self._write_all(job_id)
                    removed += len(files)
                    break
        return removed

    async def _names(self, job_id: str, kind: str, wanted: str) -> bool:
        with tempfile.TemporaryFile() as copy:  # nameless: gone when closed
            async for part in self.import_parts(job_id, kind):
                copy.write(part)
            copy.seek(0)
            head = copy.read(2)
            copy.seek(0)
            encoding = "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
            # A cell with a broken byte still compares by its readable part.
            with io.TextIOWrapper(copy, encoding=encoding, errors="replace", newline="") as text:
                try:
                    return any(normalised(cell) == wanted for cell in _cells(text))
                except csv.Error:  # not a CSV after all (a cell past csv's limit): by its text
                    text.seek(0)
                    return wanted in normalised(text.read())

    async def _write_all(self, job_id: str) -> None:
        for statement in DELETE:
            await self._write(statement, {"id": job_id})


def _cells(text: IO[str]) -> Iterator[str]:
    """Every cell of a CSV, its delimiter guessed as the importer does (the `'` a failed-rows
    file puts before a formula-looking cell dropped)."""
    first = text.readline()
    text.seek(0)
    delimiter = max(",;\t", key=first.count)
    for row in csv.reader(text, delimiter=delimiter):
        for cell in row:
            yield cell.removeprefix("'")

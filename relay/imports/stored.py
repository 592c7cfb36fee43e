"""A console import's files in the relay's database (relay.store.imports), as the importer
reads and writes them: the upload (taken in as it streams, sealed a part at a time), a working
copy of it to read rows from (a nameless temporary file: no other process or relay can open
it, and it is gone when closed), the failed rows, and the ledger of rows started and finished,
so any process of this relay can show an import and carry on one whose process died."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from relay.imports.csvfile import FailedShape, MemberFile, Row
from relay.store import Store

PART = 1024 * 1024  # bytes in each sealed part of an upload


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


async def store_upload(store: Store, job_id: str, upload: Readable) -> int:
    """The upload into the job's "upload" file, a part at a time; its size in bytes."""
    size = 0
    while chunk := await upload.read(PART):
        await store.add_import_part(job_id, "upload", chunk)
        size += len(chunk)
    return size


@asynccontextmanager
async def working_copy(
    store: Store, job_id: str, name: str, encoding: str = "", mapping: dict[str, str] | None = None
) -> AsyncIterator[MemberFile]:
    """The upload as a MemberFile, read from a nameless temporary file while the block runs
    (`encoding`: one the operator confirmed, see csvfile.sniff_encoding)."""
    with tempfile.TemporaryFile() as copy:
        async for part in store.import_parts(job_id, "upload"):
            copy.write(part)
        copy.flush()
        yield MemberFile(_fd_path(copy), name=name, encoding=encoding, mapping=mapping or {})


def _fd_path(file: IO[bytes]) -> Path:
    # Opening the descriptor's /proc entry gives each reader its own position (Linux).
    return Path(f"/proc/self/fd/{file.fileno()}")


class StoredFailedRows:
    """The failed rows as the job's "failed" file: the header, then one part per row."""

    def __init__(self, store: Store, job_id: str, header: list[str]) -> None:
        self.store, self.job_id = store, job_id
        self.shape = FailedShape(header)

    async def start(self, *, append: bool) -> StoredFailedRows:
        if not (append and await self.store.has_import_part(self.job_id, "failed")):
            await self.store.drop_import_parts(self.job_id, "failed")
            # A byte-order mark first, so Excel reads the file as UTF-8.
            header = b"\xef\xbb\xbf" + csv_line(self.shape.header)
            await self.store.add_import_part(self.job_id, "failed", header)
        return self

    async def add(self, row: Row, reason: str) -> None:
        await self.store.add_import_part(self.job_id, "failed",
                                         csv_line(self.shape.cells(row, reason)))  # fmt: skip

    async def close(self) -> None:
        return None


def csv_line(cells: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerow(cells)
    return text.getvalue().encode("utf-8")


class StoredLedger:
    """The rows a console run started and finished, in the database; the run's stamp (hook
    and file) in the job's state. Whether another process still runs the job is the page's
    to judge (by the job's heartbeat), so `held_elsewhere` is always False here."""

    def __init__(self, store: Store, job: dict[str, Any]) -> None:
        self.store, self.job = store, job

    async def held_elsewhere(self) -> bool:
        return False

    async def read(self) -> tuple[dict[str, Any], dict[int, bool], set[int]]:
        lines = await self.store.import_lines(self.job["id"])
        finished = {line: state == "ok" for line, state in lines.items() if state != "start"}
        started = {line for line, state in lines.items() if state == "start"}
        return dict(self.job.get("stamp") or {}), finished, started

    async def open(self, stamp: dict[str, Any], *, resume: bool) -> None:
        if not resume:
            await self.store.clear_import_lines(self.job["id"])
        self.job["stamp"] = stamp

    async def note(self, what: str, line: int) -> None:
        await self.store.note_import_line(self.job["id"], line, what)

    async def finish(self, *, remove: bool) -> None:
        if remove:
            await self.store.clear_import_lines(self.job["id"])

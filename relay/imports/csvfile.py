"""The files of an import (`relay import`, the console's Import page): the members' CSV read as a
stream of rows that know their line in the file, the CSV of failed rows, and the progress file
that lets a crashed run resume.

Nothing here holds more than one row at a time, so 50,000 rows cost what one does. A row is read
the way a Zapier or Make body is (`relay.forms.payloads`): "First Name" and "first_name" are one
field.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from relay.errors import InvalidBody
from relay.forms.payloads import Payload, normalise_key, parse_payload

# The failed-rows file's extra column; ignored when that file is imported again once fixed.
REASON_COLUMN = "Import problem"
_REASON_KEY = normalise_key(REASON_COLUMN)
_DELIMITERS = ",;\t"  # Excel in much of Europe saves CSV with semicolons


class CsvProblem(Exception):
    """The file as a whole cannot be read as a CSV (said in words, with the line when known)."""


@dataclass(frozen=True)
class Row:
    line: int  # the line of the file the row starts on; the header is line 1
    cells: list[str]


@dataclass
class MemberFile:
    """A CSV with a header row. Rows are read afresh on each pass, never all kept."""

    path: Path
    name: str = ""  # the file's name in messages (its path's, unless told)
    header: list[str] = field(default_factory=list)
    dialect: str = ","

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name
        with self._open() as text:
            first = text.readline()
        if not first.strip():
            raise CsvProblem(f"{self.name} is empty: it needs a header row naming the columns")
        self.dialect = max(_DELIMITERS, key=first.count)
        with self._open() as text:
            self.header = next(csv.reader(text, delimiter=self.dialect))

    def _open(self) -> IO[str]:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        return self.path.open(encoding="utf-8-sig", newline="")

    def rows(self) -> Iterator[Row]:
        """Every non-blank row after the header, with the line it starts on (a quoted cell may
        span lines, so the line is counted by the reader, not by the rows)."""
        with self._open() as text:
            reader = csv.reader(text, delimiter=self.dialect)
            read_up_to = 0
            try:
                for cells in reader:
                    start, read_up_to = read_up_to + 1, reader.line_num
                    if start > 1 and any(cell.strip() for cell in cells):
                        yield Row(start, cells)  # not the header, nor a blank line
            except UnicodeDecodeError:
                raise CsvProblem(
                    f"{self.name} is not UTF-8 text (near line {read_up_to + 1}): in Excel "
                    "use Save As › CSV UTF-8"
                ) from None
            except csv.Error as exc:
                raise CsvProblem(f"{self.name} line {read_up_to + 1}: {exc}") from None

    def count(self) -> int:
        return sum(1 for _ in self.rows())

    def payload(self, row: Row) -> Payload:
        """The row as a hook delivery's flat fields (InvalidBody/InvalidField when it cannot
        be one, e.g. a broken character)."""
        beyond = row.cells[len(self.header) :]
        if any(cell.strip() for cell in beyond):
            raise InvalidBody(
                f"this row has {len(row.cells)} cells but the header names {len(self.header)} "
                "columns: a comma inside a value needs quotes around the value"
            )
        pairs = [(name, cell) for name, cell in zip(self.header, row.cells, strict=False)
                 if normalise_key(name) != _REASON_KEY]  # fmt: skip
        return parse_payload(urlencode(pairs).encode(), "application/x-www-form-urlencoded")


class FailedShape:
    """The failed-rows CSV's shape: the input's columns plus REASON_COLUMN (or the input's own
    REASON_COLUMN, when a failed-rows file is imported again)."""

    def __init__(self, header: list[str]) -> None:
        reasons = [normalise_key(name) for name in header]
        self.reason_at = reasons.index(_REASON_KEY) if _REASON_KEY in reasons else len(header)
        self.width = max(len(header), self.reason_at + 1)
        named = self.reason_at < len(header)
        self.header = header if named else [*header, REASON_COLUMN]

    def cells(self, row: Row, reason: str) -> list[str]:
        cells = (row.cells + [""] * self.width)[: self.width]
        cells[self.reason_at] = reason
        return cells


class FailedRows:
    """The rows that failed, as a CSV shaped like the input plus REASON_COLUMN, written as they
    fail (flushed: a crash keeps what was written). Fix them and import the file as it is."""

    def __init__(self, path: Path, header: list[str], *, append: bool = False) -> None:
        keep = append and path.exists() and path.stat().st_size > 0
        self.file = path.open("a" if keep else "w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file)
        self.shape = FailedShape(header)
        self.count = 0
        if not keep:
            self.writer.writerow(self.shape.header)

    async def add(self, row: Row, reason: str) -> None:
        self.writer.writerow(self.shape.cells(row, reason))
        self.file.flush()
        self.count += 1

    async def close(self) -> None:
        self.file.close()


class ImportRunning(Exception):
    """Another import of the same file holds its progress file."""


class Progress:
    """`members.csv.import-progress`, beside the CSV: which rows a run started and finished, so
    `--resume` skips the finished ones and knows which were in flight when the run died.
    Locked while a run holds it, so a second run of the same file is refused."""

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path.with_name(csv_path.name + ".import-progress")
        self.file: IO[str] | None = None

    @staticmethod
    def stamp(csv_path: Path, hook_id: str) -> dict[str, Any]:
        info = csv_path.stat()
        return {"hook": hook_id, "size": info.st_size, "mtime_ns": info.st_mtime_ns}

    async def read(self) -> tuple[dict[str, Any], dict[int, bool], set[int]]:
        """(stamp, finished line → succeeded, lines started but never finished)."""
        finished: dict[int, bool] = {}
        started: set[int] = set()
        if not self.path.exists():
            return {}, finished, started
        with self.path.open(encoding="utf-8") as text:
            stamp = _json_or_empty(text.readline())
            for entry in text:
                what, _, line = entry.strip().partition(" ")
                if not line.isdigit():
                    continue  # a line cut short by the crash
                if what == "start":
                    started.add(int(line))
                elif what in ("ok", "failed"):
                    finished[int(line)] = what == "ok"
        return stamp, finished, started - finished.keys()

    async def open(self, stamp: dict[str, Any], *, resume: bool) -> None:
        self.file = self.path.open("a" if resume else "w", encoding="utf-8")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            self.file = None
            raise ImportRunning(
                f"an import of this file is still running ({self.path.name})"
            ) from None
        if not resume:
            self.file.write(json.dumps(stamp) + "\n")
            self.file.flush()

    async def held_elsewhere(self) -> bool:
        """True while another process's run holds the lock (it is alive)."""
        if not self.path.exists():
            return False
        with self.path.open("a", encoding="utf-8") as probe:
            try:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False

    async def note(self, what: str, line: int) -> None:
        assert self.file is not None
        self.file.write(f"{what} {line}\n")
        self.file.flush()

    async def finish(self, *, remove: bool) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

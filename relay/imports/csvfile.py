"""The files of an import (`relay import`, the console's Import page): the members' CSV read as a
stream of rows that know their line in the file, the CSV of failed rows, and the progress file
that lets a crashed run resume.

Nothing here holds more than one row at a time, so 50,000 rows cost what one does. A row is read
the way a Zapier or Make body is (`relay.forms.payloads`): "First Name" and "first_name" are one
field.

Encodings: UTF-8 (with or without Excel's byte-order mark) and UTF-16 with its mark are read as
they are. Any other file is Windows-1252 at best (Excel's "CSV" on Windows): it is read only when
the operator, shown its first rows that way, says they read right (`encoding="cp1252"`);
otherwise `NotUtf8` says so in words, with those rows.

The failed-rows file is UTF-8 with a byte-order mark (Excel opens it right), and a cell that a
spreadsheet would run as a formula (starting with `= + - @`, a tab or a carriage return) is
written with a leading `'`, which a spreadsheet shows as text; reading drops that `'` again, so
the file imports as it is (`+44…` phones and `-5` points included).
"""

from __future__ import annotations

import codecs
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


ENCODINGS = {"cp1252": "Windows-1252"}  # what an operator may confirm a file is in
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PREVIEW_ROWS = 5
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


class CsvProblem(Exception):
    """The file as a whole cannot be read as a CSV (said in words, with the line when known)."""


class NotUtf8(CsvProblem):
    """The file is not UTF-8 or UTF-16: `preview` holds its first rows read as Windows-1252
    (empty when it cannot be read that way either), for the operator to judge."""

    def __init__(self, message: str, preview: list[list[str]]) -> None:
        super().__init__(message)
        self.preview = preview


def escape_cell(cell: str) -> str:
    """A cell as the failed-rows file writes it: never run as a formula by a spreadsheet."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def unescape_cell(cell: str) -> str:
    """A cell as read: the `'` escape_cell put before a formula-looking cell dropped."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


def sniff_encoding(path: Path, confirmed: str = "") -> str:
    """The encoding to read `path` in: its byte-order mark's, UTF-8 when every byte is, else
    `confirmed` (one of ENCODINGS) when the operator said the rows read right that way."""
    with path.open("rb") as binary:
        head = binary.read(4)
        for mark, encoding in _BOMS:
            if head.startswith(mark):
                return encoding
        binary.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := binary.read(1024 * 1024):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    if confirmed in ENCODINGS:
        return confirmed
    raise NotUtf8(
        f"{path.name} is not saved as UTF-8, so its letters may read wrong. In Excel use "
        "Save As › CSV UTF-8 and upload that",
        _preview(path),
    )


def _preview(path: Path) -> list[list[str]]:
    """The first rows read as Windows-1252; [] when even that fails (bytes it has no letter for)."""
    try:
        with path.open(encoding="cp1252", newline="") as text:
            first = text.readline()
            text.seek(0)
            reader = csv.reader(text, delimiter=max(_DELIMITERS, key=first.count))
            return [row for _, row in zip(range(PREVIEW_ROWS), reader, strict=False)]
    except (UnicodeDecodeError, csv.Error):
        return []


@dataclass(frozen=True)
class Row:
    line: int  # the line of the file the row starts on; the header is line 1
    cells: list[str]


@dataclass
class MemberFile:
    """A CSV with a header row. Rows are read afresh on each pass, never all kept."""

    path: Path
    name: str = ""  # the file's name in messages (its path's, unless told)
    encoding: str = ""  # "cp1252" once the operator confirmed it; else found (sniff_encoding)
    # Template field → the column that fills it (relay.imports.columns): only these are sent.
    # Empty: every column is sent under its header's name, as a zap's field.
    mapping: dict[str, str] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    dialect: str = ","

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name
        try:
            self.encoding = sniff_encoding(self.path, self.encoding)
        except NotUtf8 as exc:
            raise NotUtf8(str(exc).replace(self.path.name, self.name, 1), exc.preview) from None
        try:
            with self._open() as text:
                first = text.readline()
        except UnicodeDecodeError as exc:  # a UTF-16 mark before bytes that are not UTF-16
            raise CsvProblem(f"{self.name} cannot be read as text: {exc.reason}") from None
        if not first.strip():
            raise CsvProblem(f"{self.name} is empty: it needs a header row naming the columns")
        self.dialect = max(_DELIMITERS, key=first.count)
        with self._open() as text:
            try:
                first_row = next(csv.reader(text, delimiter=self.dialect))
            except (csv.Error, UnicodeDecodeError) as exc:
                raise CsvProblem(f"{self.name} line 1 cannot be read: {exc}") from None
        self.header = [unescape_cell(cell) for cell in first_row]
        missing = [column for column in self.mapping.values() if column not in self.header]
        if missing:
            raise CsvProblem(f"{self.name} has no column {missing[0]!r} any more")
        self._mapped = [(name, self.header.index(column)) for name, column in self.mapping.items()]

    def _open(self) -> IO[str]:
        return self.path.open(encoding=self.encoding, newline="")

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
                        yield Row(start, [unescape_cell(cell) for cell in cells])
            except UnicodeDecodeError:  # the file changed since it was looked at
                raise CsvProblem(
                    f"{self.name} has a character that cannot be read near line "
                    f"{read_up_to + 1}: in Excel use Save As › CSV UTF-8"
                ) from None
            except csv.Error as exc:
                raise CsvProblem(f"{self.name} line {read_up_to + 1}: {exc}") from None

    def sample(self, rows: int = 20) -> list[list[str]]:
        """The first rows' cells (what a column matching guesses from)."""
        return [row.cells for _, row in zip(range(rows), self.rows(), strict=False)]

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
        if self.mapping:
            cells = row.cells + [""] * len(self.header)
            pairs = [(name, cells[index]) for name, index in self._mapped]
        else:
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
        self.header = [escape_cell(c) for c in (header if named else [*header, REASON_COLUMN])]

    def cells(self, row: Row, reason: str) -> list[str]:
        """The row as written: padded to the header, its reason in, formulas defused."""
        cells = (row.cells + [""] * self.width)[: self.width]
        cells[self.reason_at] = reason
        return [escape_cell(cell) for cell in cells]


class FailedRows:
    """The rows that failed, as a CSV shaped like the input plus REASON_COLUMN, written as they
    fail (flushed: a crash keeps what was written). Fix them and import the file as it is."""

    def __init__(self, path: Path, header: list[str], *, append: bool = False) -> None:
        keep = append and path.exists() and path.stat().st_size > 0
        # utf-8-sig: a byte-order mark first, so Excel reads the file as UTF-8
        self.file = path.open("a" if keep else "w", encoding="utf-8" if keep else "utf-8-sig",
                              newline="")  # fmt: skip
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

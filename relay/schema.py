"""A small, fast validator for rendered PassKit request bodies.

Each PassKit message (Member, Coupon, IssueTicketRequest, …) is described once with these specs in
`relay.operations`. Validation collects every problem with its JSON path (`person.emailAddress`),
so a broken template or an odd value is reported completely before anything is sent or billed.
It is hand-rolled rather than a model library because it runs on every request and the whole
job is "right JSON types, required keys, one identity": a few dict look-ups.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Problems = list[tuple[str, str]]

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Spec:
    """One JSON value's expected shape."""

    expected = "a value"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        raise NotImplementedError

    def _wrong(self, value: Any, path: str, problems: Problems) -> None:
        problems.append((path, f"must be {self.expected} (got {_kind(value)})"))


@dataclass(frozen=True)
class Str(Spec):
    max_len: int = 2000
    expected = "text"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, str):
            self._wrong(value, path, problems)
        elif not value.strip():
            problems.append((path, "must not be empty"))
        elif len(value) > self.max_len:
            problems.append(
                (path, f"is too long ({len(value)} characters, at most {self.max_len})")
            )


@dataclass(frozen=True)
class Num(Spec):
    minimum: float | None = None
    integer: bool = False

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "a whole number" if self.integer else "a number"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(value, path, problems)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((path, "must be a finite number"))
        elif self.integer and value != int(value):
            problems.append((path, f"must be a whole number (got {value})"))
        elif self.minimum is not None and value < self.minimum:
            problems.append((path, f"must be at least {self.minimum:g} (got {value:g})"))


@dataclass(frozen=True)
class Bool(Spec):
    expected = "true or false"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, bool):
            self._wrong(value, path, problems)


@dataclass(frozen=True)
class Enum(Spec):
    names: tuple[str, ...] = ()

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if value not in self.names:
            problems.append((path, f"must be one of {', '.join(self.names)} (got {value!r})"))


@dataclass(frozen=True)
class Timestamp(Spec):
    expected = "an RFC 3339 date-time like 2026-12-31T23:59:59Z"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, str) or not _RFC3339.match(value):
            problems.append((path, f"must be {self.expected} (got {value!r})"))


@dataclass(frozen=True)
class DateParts(Spec):
    """PassKit's `io.Date`: {"year": 1990, "month": 4, "day": 27}."""

    expected = "a date object {year, month, day}"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, dict) or set(value) - {"year", "month", "day"}:
            self._wrong(value, path, problems)
            return
        for part, low, high in (("year", 1, 9999), ("month", 1, 12), ("day", 1, 31)):
            number = value.get(part)
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                problems.append((f"{path}.{part}", f"must be a whole number from {low} to {high}"))


@dataclass(frozen=True)
class StrMap(Spec):
    """A protobuf map<string,string> such as metaData: every value must be text."""

    expected = "an object of texts"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, dict):
            self._wrong(value, path, problems)
            return
        for key, item in value.items():
            if not isinstance(item, str):
                problems.append((f"{path}.{key}", f"must be text (got {_kind(item)})"))


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec = field(default_factory=Str)
    expected = "a list"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, list):
            self._wrong(value, path, problems)
            return
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]", problems)


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with known keys.

    `identity` lists alternative key sets of which at least one must be complete, e.g.
    (("id",), ("externalId", "programId")): PassKit finds a record by its id or by external id.
    """

    fields: Mapping[str, Spec] = field(default_factory=dict)
    required: Sequence[str] = ()
    identity: Sequence[Sequence[str]] = ()
    expected = "an object"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, dict):
            self._wrong(value, path, problems)
            return
        prefix = f"{path}." if path else ""
        for name in self.required:
            if name not in value:
                problems.append((prefix + name, "is required"))
        if self.identity and not any(all(k in value for k in keys) for keys in self.identity):
            choices = " or ".join(" with ".join(keys) for keys in self.identity)
            problems.append((path or "body", f"must identify the record: send {choices}"))
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None:
                known = ", ".join(self.fields)
                problems.append(
                    (prefix + key, f"is not a field PassKit knows here (known: {known})")
                )
            else:
                spec.check(item, prefix + key, problems)


def validate(spec: Spec, value: Any) -> Problems:
    """Every problem in `value`, as (json path, message) pairs; empty when it is valid."""
    problems: Problems = []
    spec.check(value, "", problems)
    return problems

"""A small, fast validator for rendered PassKit request bodies.

The specs are built from PassKit's own contract (`relay.passkit.contract`), never written by hand:
JSON types as protojson reads them (unknown fields refused, ints whole and in range, enums by
name, timestamps RFC 3339, `map<string,string>` values text), oneof groups, and PassKit's
validation rules from its Go SDK (`required`, `required_without`, `max=255`, `gte=0`, `email`…).
Validation collects every problem with its JSON path (`person.emailAddress`), so a broken template
or an odd value is reported completely before anything is sent or billed. It is hand-rolled rather
than protobuf itself because it runs on every request and the runtime must not need grpc.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Problems = list[tuple[str, str]]
UNKNOWN_FIELD = "is not a field PassKit knows here"

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_FLOAT32_MAX = 3.4028234663852886e38
RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
}


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


def is_zero(value: Any) -> bool:
    """Go's zero value, which PassKit's validator reads as "not sent": absent, null, "", 0,
    false, an empty list or map. An object (a set message) is never zero."""
    if value is None or value is False:
        return True
    if isinstance(value, (str, list)) or (isinstance(value, (int, float)) and value == 0):
        return not value
    return False


class Spec:
    """One JSON value's expected shape."""

    expected = "a value"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        raise NotImplementedError

    def _wrong(self, value: Any, path: str, problems: Problems) -> None:
        problems.append((path, f"must be {self.expected} (got {_kind(value)})"))


@dataclass(frozen=True)
class Str(Spec):
    max_len: int = 2000  # the relay's own bound where PassKit publishes none
    allow_empty: bool = False  # the relay never sends blank text (PassKit would take it)
    expected = "text"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, str):
            self._wrong(value, path, problems)
        elif not value.strip() and not self.allow_empty:
            problems.append((path, "must not be empty"))
        elif len(value) > self.max_len:
            problems.append(
                (path, f"is too long ({len(value)} characters, at most {self.max_len})")
            )


@dataclass(frozen=True)
class Num(Spec):
    """A JSON number; `kind` is the proto type (int32, uint32, float, double…)."""

    kind: str = "double"

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "a whole number" if self.kind in RANGES else "a number"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(value, path, problems)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((path, "must be a finite number"))
        elif self.kind in RANGES:
            low, high = RANGES[self.kind]
            if value != int(value):
                problems.append((path, f"must be a whole number (got {value})"))
            elif not low <= value <= high:
                problems.append((path, f"must be a whole number from {low} to {high}"))
        elif self.kind == "float" and abs(value) > _FLOAT32_MAX:
            problems.append((path, "is too large for PassKit (a 32-bit number)"))


@dataclass(frozen=True)
class Bool(Spec):
    expected = "true or false"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, bool):
            self._wrong(value, path, problems)


@dataclass(frozen=True)
class Enum(Spec):
    """An enum, sent by name (protojson also reads the number)."""

    numbers: Mapping[str, int] = field(default_factory=dict)

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if isinstance(value, str) and value in self.numbers:
            return
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value in self.numbers.values()
        ):
            return
        names = ", ".join(self.numbers)
        problems.append((path, f"must be one of {names} (got {value!r})"))


@dataclass(frozen=True)
class Timestamp(Spec):
    expected = "an RFC 3339 date-time like 2026-12-31T23:59:59Z"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, str) or not _RFC3339.match(value):
            problems.append((path, f"must be {self.expected} (got {value!r})"))


@dataclass(frozen=True)
class AnyJson(Spec):
    """`google.protobuf.Struct` / `Value`: any JSON (an object, for a Struct)."""

    object_only: bool = True
    expected = "an object"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if self.object_only and not isinstance(value, dict):
            self._wrong(value, path, problems)


@dataclass(frozen=True)
class MapOf(Spec):
    """A protobuf map with string keys, such as metaData (map<string,string>)."""

    item: Spec = field(default_factory=Str)
    expected = "an object of texts"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, dict):
            self._wrong(value, path, problems)
            return
        for key, item in value.items():
            if isinstance(self.item, Str) and not isinstance(item, str):
                problems.append((f"{path}.{key}", f"must be text (got {_kind(item)})"))
            elif not isinstance(self.item, Str):
                self.item.check(item, f"{path}.{key}", problems)


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


# -- PassKit's validation rules (go-playground/validator tags) ----------------------------------

Check = Callable[[Any], str | None]  # a value → the problem, or None when it passes


def _size(value: Any) -> float:
    return len(value) if isinstance(value, (str, list, dict)) else float(value)


def _bound(name: str, limit: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, list, dict, int, float)):
            return None  # the type check already said what is wrong
        size, text = _size(value), isinstance(value, str)
        unit = " characters" if text else (" items" if isinstance(value, (list, dict)) else "")
        shown = f"{limit:g}{unit}"
        if name in ("max", "lte") and size > limit:
            return f"is more than PassKit allows (at most {shown}; got {size:g}{unit})"
        if name in ("min", "gte") and size < limit:
            return f"is less than PassKit allows (at least {shown})"
        if name == "len" and size != limit:
            return f"must be exactly {shown}"
        return None

    return check


def _email(value: Any) -> str | None:
    from relay.forms.filters import checked_email  # the one reading of an address PassKit accepts

    if not isinstance(value, str):
        return None
    return checked_email(value)[1]


def _coordinate(limit: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > limit:
            return f"must be between -{limit:g} and {limit:g}"
        return None

    return check


def _url(http: bool) -> Check:
    def check(value: Any) -> str | None:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None:
            return None
        web = parts.scheme in ("http", "https") and parts.netloc
        if not parts.scheme or (http and not web):
            return "must be a web address (https://…)" if http else "must be a URI"
        return None

    return check


def value_check(name: str, param: str) -> Check | None:
    """The check for one tag, or None for tags the relay does not check (documented in
    `relay.passkit.contract`: PassKit-specific ones such as uuidCompressedString or
    ianaTimeZone)."""
    if name in ("max", "min", "gte", "lte", "len"):
        return _bound(name, float(param))
    if name == "email":
        return _email
    if name in ("latitude", "longitude"):
        return _coordinate(90.0 if name == "latitude" else 180.0)
    if name in ("http_url", "uri"):
        return _url(name == "http_url")
    return None


@dataclass(frozen=True)
class Checked(Spec):
    """A field's type plus the value rules PassKit's validator applies (skipped for a zero
    value when the tag says omitempty)."""

    inner: Spec
    checks: tuple[Check, ...] = ()
    omitempty: bool = True

    @property
    def expected(self) -> str:  # type: ignore[override]
        return self.inner.expected

    def check(self, value: Any, path: str, problems: Problems) -> None:
        before = len(problems)
        self.inner.check(value, path, problems)
        if len(problems) > before or (self.omitempty and is_zero(value)):
            return
        for check in self.checks:
            if (problem := check(value)) is not None:
                problems.append((path, problem))


@dataclass(frozen=True)
class Condition:
    """A presence rule on one field: required, required_without(_all), required_with, or
    isdefault (set by PassKit, never sent)."""

    field: str
    rule: str
    others: tuple[str, ...] = ()

    def problem(self, body: Mapping[str, Any], label: Callable[[str], str]) -> str | None:
        present = not is_zero(body.get(self.field))
        if self.rule == "isdefault":
            return None if not present else "is set by PassKit and cannot be sent"
        if present:
            return None
        others_sent = [not is_zero(body.get(other)) for other in self.others]
        names = " or ".join(label(other) for other in self.others)
        if self.rule == "required":
            return "is required"
        if self.rule == "required_without" and not all(others_sent):
            return f"is required unless {names} is sent"
        if self.rule == "required_without_all" and not any(others_sent):
            return f"is required (and not 0) unless {names} is sent"
        if self.rule == "required_with" and any(others_sent):
            return f"is required when {names} is sent"
        return None


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with known keys.

    `conditions` are PassKit's presence rules; `oneofs` groups of which at most one may be sent
    (`required_oneofs`: exactly one); `identity` (the relay's own) lists alternative key sets of
    which at least one must be complete, e.g. (("id",), ("externalId", "programId")).
    """

    name: str = ""
    fields: Mapping[str, Spec] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    oneofs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    required_oneofs: tuple[str, ...] = ()
    identity: Sequence[Sequence[str]] = ()
    expected = "an object"

    def check(self, value: Any, path: str, problems: Problems) -> None:
        if not isinstance(value, dict):
            self._wrong(value, path, problems)
            return
        prefix = f"{path}." if path else ""
        said: set[str] = set()  # "a unless b or c" said once, not again for b and c

        def label(name: str) -> str:
            return prefix + name

        for condition in self.conditions:
            if condition.field in said:
                continue
            if problem := condition.problem(value, label):
                problems.append((prefix + condition.field, problem))
                if condition.rule == "required_without_all":
                    said.update(condition.others)
        for group, members in self.oneofs.items():
            sent = [name for name in members if value.get(name) is not None]
            if len(sent) > 1:
                first, *rest = (prefix + name for name in sent)
                problems.append((rest[0], f"cannot be sent together with {first}: PassKit takes "
                                 f"only one of {', '.join(members)}"))  # fmt: skip
            elif not sent and group in self.required_oneofs:
                choices = " or ".join(prefix + name for name in members)
                problems.append((path or "body", f"must send {choices}"))
        if self.identity and not any(all(k in value for k in keys) for keys in self.identity):
            choices = " or ".join(" with ".join(keys) for keys in self.identity)
            problems.append((path or "body", f"must identify the record: send {choices}"))
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None:
                known = ", ".join(self.fields)
                problems.append((prefix + key, f"{UNKNOWN_FIELD} (known: {known})"))
            elif item is not None:  # protojson reads null as "not set"
                spec.check(item, prefix + key, problems)


def validate(spec: Spec, value: Any) -> Problems:
    """Every problem in `value`, as (json path, message) pairs; empty when it is valid."""
    problems: Problems = []
    spec.check(value, "", problems)
    return problems

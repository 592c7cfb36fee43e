"""Matching a spreadsheet's own columns ("Member No", "E-mail address", "Given name") to a hook
template's fields (`external_id`, `email`, `first_name`): the best guess for each field, for the
operator to confirm on the console's matching step or to give as `--map` in the terminal.

A guess weighs the header (the field's name and the words people use for it, compared with
difflib's similarity) and the first rows' content (an @ means an email, digits and + a phone, a
number a number, a date a date); each column goes to one field at most, the surest pairs first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from relay.delivery.templating import FieldSpec
from relay.forms.payloads import normalise_key

# Words a spreadsheet uses for a field, beyond its own name (compared after normalise_key).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "external_id": ("member_no", "member_number", "membership_number", "membership_no",
                    "member_id", "customer_id", "customer_number", "crm_id", "id", "account",
                    "account_number", "client_id", "reference", "ref"),
    "email": ("e_mail", "e_mail_address", "email_address", "mail", "e_mail_adresse"),
    "first_name": ("given_name", "forename", "first", "firstname", "christian_name"),
    "last_name": ("surname", "family_name", "last", "lastname"),
    "display_name": ("name", "full_name", "member_name", "customer_name"),
    "mobile": ("phone", "mobile_number", "mobile_phone", "cell", "cell_phone", "telephone",
               "phone_number", "tel"),
    "birthday": ("date_of_birth", "dob", "birth_date", "birthdate"),
    "points": ("balance", "points_balance", "point_balance", "loyalty_points"),
    "tier": ("tier_id", "level", "membership_level", "membership_type", "plan"),
    "expiry": ("expires", "expiry_date", "expiration", "expiration_date", "valid_until"),
}  # fmt: skip
SURE = 0.55  # a guess below this is no guess: the field is left to the operator
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_DATE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$|^\d{1,2} \w+ \d{4}$|^\w+ \d{1,2},? \d{4}$")
_CONTENT = {"email": _EMAIL, "phone": _PHONE, "number": _NUMBER, "date": _DATE}


@dataclass(frozen=True)
class Column:
    index: int
    header: str
    samples: tuple[str, ...]  # the first rows' non-blank values


def columns_of(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[Column]:
    samples: list[list[str]] = [[] for _ in header]
    for cells in rows:
        for i, cell in enumerate(cells[: len(header)]):
            if cell.strip():
                samples[i].append(cell.strip())
    return [Column(i, name, tuple(samples[i])) for i, name in enumerate(header)]


def _header_score(spec: FieldSpec, header: str) -> float:
    key = normalise_key(header)
    if not key:
        return 0.0
    names = (spec.name, *SYNONYMS.get(spec.name, ()))
    if key in names:
        return 1.0
    return max(SequenceMatcher(None, key, name).ratio() for name in names) * 0.85


def _content_score(spec: FieldSpec, column: Column) -> float:
    """How far the first rows look like the field's type (0 when unknown or no rows)."""
    pattern = _CONTENT.get(spec.type)
    if pattern is None or not column.samples:
        return 0.0
    return sum(bool(pattern.match(v)) for v in column.samples) / len(column.samples)


def score(spec: FieldSpec, column: Column) -> float:
    header = _header_score(spec, column.header)
    content = _content_score(spec, column)
    # Content confirms or weakens a header, and alone can find an email or phone column.
    if spec.type in _CONTENT and column.samples:
        if content < 0.5 and header < 1.0:
            return header * 0.5
        return max(header, 0.6 * content + 0.4 * header)
    return header


def guess(fields: Sequence[FieldSpec], columns: Sequence[Column]) -> dict[str, int | None]:
    """Each field → the index of the column that best matches it, or None."""
    pairs = sorted(((score(spec, column), spec.name, column.index)
                    for spec in fields for column in columns), reverse=True)  # fmt: skip
    chosen: dict[str, int | None] = {spec.name: None for spec in fields}
    taken: set[int] = set()
    for value, name, index in pairs:
        if value < SURE:
            break
        if chosen[name] is None and index not in taken:
            chosen[name] = index
            taken.add(index)
    return chosen


def importable(fields: Mapping[str, FieldSpec]) -> list[FieldSpec]:
    """The fields a column can fill (not the template's `*` patterns), required ones first."""
    specs = [spec for name, spec in fields.items() if "*" not in name]
    return sorted(specs, key=lambda spec: not spec.required)


class MappingProblem(ValueError):
    """A --map that names a column or field that is not there (in words)."""


def parse_map(given: Sequence[str], header: Sequence[str], fields: Sequence[str]) -> dict[str, str]:
    """`--map "Member No=external_id"` (repeatable) → {field: column header}; the header and
    field are matched as payload keys are ("member no" finds "Member No")."""
    by_key = {normalise_key(h): h for h in header}
    mapping: dict[str, str] = {}
    for item in given:
        column, sep, field_name = item.rpartition("=")
        column, field_name = column.strip(), normalise_key(field_name)
        if not sep or not column or not field_name:
            raise MappingProblem(f'--map {item!r} should look like "Member No=external_id"')
        if normalise_key(column) not in by_key:
            raise MappingProblem(f"--map {item!r}: the file has no column {column!r} (it has "
                                 f"{', '.join(header)})")  # fmt: skip
        if field_name not in fields:
            raise MappingProblem(f"--map {item!r}: the hook has no field {field_name!r} (it "
                                 f"takes {', '.join(fields)})")  # fmt: skip
        mapping[field_name] = by_key[normalise_key(column)]
    return mapping

"""Flat field values that remember which field they came from.

Templates see every incoming field as text (or a list of texts). Wrapping the text in a `str`
subclass lets a filter that rejects a value name the field in its friendly error without the
template author passing the name along.
"""

from __future__ import annotations


class FieldValue(str):
    """A field's text, carrying the (normalised) field name it arrived under."""

    field: str | None

    def __new__(cls, text: str, field: str | None = None) -> FieldValue:
        self = super().__new__(cls, text)
        self.field = field
        return self


class FieldList(list[FieldValue]):
    """Several values for one field (repeated keys or a JSON array)."""

    field: str | None

    def __init__(self, values: list[FieldValue], field: str | None = None) -> None:
        super().__init__(values)
        self.field = field


Field = FieldValue | FieldList
Fields = dict[str, Field]


def field_name(value: object) -> str | None:
    """The field a value came from, when it still knows (plain values do not)."""
    return getattr(value, "field", None)

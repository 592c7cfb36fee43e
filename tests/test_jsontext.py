"""relay.jsontext writes what the standard library's compact JSON writes, faster: the PassKit
request, a delivery's answer and what the log and the replay store keep all go through it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from relay.jsontext import canonical, compact, compact_text


def stdlib(value: Any, default: Any = None) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default).encode()


# Text with control characters, quotes, backslashes, accents, emoji and U+2028 (never a lone
# surrogate: the standard library would write one and then fail to encode it, as compact does).
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
whole = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | whole | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_every_json_value_without_floats_is_written_byte_for_byte_as_json_writes_it(
    value: Any,
) -> None:
    assert compact(value) == stdlib(value)
    assert compact_text(value) == stdlib(value).decode()


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_finite_float_reads_back_as_the_same_number(number: float) -> None:
    written = compact({"points": number})  # spelt as orjson spells it: 0.00001 for 1e-05
    assert json.loads(written) == {"points": number}
    assert written.startswith(b'{"points":') and written.endswith(b"}")


def test_what_orjson_would_write_otherwise_is_written_by_the_standard_library() -> None:
    when = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
    cases: list[Any] = [
        {1: "a key that is a number"},
        2**70,  # past 64 bits
        {"at": when},  # orjson writes dates its own way; json with default=str another
        {"markup": Markup("<b>Ana</b>")},  # a text subclass, as Jinja makes them
        (1, "two"),
    ]
    for value in cases:
        assert compact(value, default=str) == stdlib(value, default=str), value
    assert compact_text({"at": when}, default=str) == '{"at":"2026-12-07 13:00:00+00:00"}'


def test_values_json_refuses_are_refused_the_same_way() -> None:
    for value, error in (({"what": object()}, TypeError), ("\ud800", UnicodeEncodeError)):
        for write in (compact, stdlib):
            try:
                write(value)
            except error:
                continue
            raise AssertionError(f"{write.__name__} wrote {value!r}")


def test_a_non_finite_number_is_null_not_the_invalid_nan_json_would_write() -> None:
    assert compact([math.nan, math.inf]) == b"[null,null]"
    assert stdlib([math.nan]) == b"[NaN]"  # not JSON: no parser but Python's reads it


# Any text at all, lone surrogates included: a form value can carry one.
any_text = st.text(max_size=12)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(any_text, any_text | st.lists(any_text, max_size=3), max_size=6))
def test_the_canonical_text_a_digest_is_taken_of_is_the_standard_librarys_byte_for_byte(flat):
    expected = json.dumps(flat, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert canonical(flat) == expected.encode("utf-8", "surrogatepass")

"""Request bodies as Zapier and Make send them → flat, normalised fields (relay.forms.payloads)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import MESSAGE_LIMIT, InvalidBody, PayloadError, UnsupportedMediaType
from relay.forms.fields import FieldList, FieldValue
from relay.forms.payloads import RESERVED, Payload, normalise_key, parse_payload

SAMPLES = Path(__file__).resolve().parent / "samples"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ZAPIER_BOUNDARY = "------------------------d74496d66958873e"
MAKE_BOUNDARY = "----MakeFormBoundary7MA4YWxkTrZu0gW"

Plain = dict[str, str | list[str]]


def plain(payload: Payload) -> Plain:
    """Fields as plain str / list[str], after checking every value knows its field."""
    out: Plain = {}
    for name, value in payload.fields.items():
        assert value.field == name
        if isinstance(value, FieldList):
            assert value, name
            assert all(type(item) is FieldValue and item.field == name for item in value)
            out[name] = [str(item) for item in value]
        else:
            assert type(value) is FieldValue
            out[name] = str(value)
    return out


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


ANA_FLAT: Plain = {
    "external_id": "CRM-10442",
    "person__email": "ana.lima@example.com",
    "person__first_name": "Ana",
    "person__last_name": "Lima",
    "meta__source": "Typeform",
    "points": "120",
    "tags": "vip,newsletter",
}

# sample file, Content-Type it is sent with, fields, idempotency_key, dry_run
SAMPLE_CASES = [
    pytest.param(
        "zapier/form.urlencoded",
        FORM,
        {
            "external_id": "CRM-10442",
            "email": "ana.lima@example.com",
            "first_name": "Ana",
            "last_name": "Lima",
            "mobile": "+44 7700 900123",
            "birthday": "1990-04-12",
            "tier": "gold",
            "points": "120",
            "meta_source": "Typeform",
            "tags": "vip,newsletter",
        },
        "typeform-8f3a2c",
        False,
        id="zapier-form",
    ),
    pytest.param("zapier/json.json", JSON, ANA_FLAT, None, False, id="zapier-json-dunder-keys"),
    pytest.param("zapier/unflatten.json", JSON, ANA_FLAT, None, False, id="zapier-unflatten"),
    pytest.param(
        "zapier/wrap-in-array.json",
        JSON,
        {"external_id": "CRM-10442", "email": "ana.lima@example.com", "points": "120"},
        None,
        True,
        id="zapier-wrap-in-array",
    ),
    pytest.param(
        "zapier/multipart.bin",
        f"multipart/form-data; boundary={ZAPIER_BOUNDARY}",
        {"external_id": "CRM-10442", "email": "ana.lima@example.com", "first_name": "Ana"},
        None,
        False,
        id="zapier-multipart-with-file",
    ),
    pytest.param(
        "make/raw-json.json",
        JSON,
        {
            "external_id": "MK-5531",
            "email": "bruno@example.com",
            "first_name": "Bruno",
            "points": "250",
            "discount": "12.5",
            "opted_in": "true",
            "tags": ["vip", "early-bird"],
            "address__city": "Lisboa",
            "address__postcode": "1100-148",
            "orders__0__sku": "A-1",
            "orders__0__qty": "2",
            "orders__1__sku": "B-7",
            "orders__1__qty": "1",
        },
        "make-exec-77f1",
        False,
        id="make-raw-json",
    ),
    pytest.param(
        "make/raw-newline.json",
        JSON,
        {"external_id": "MK-5531", "notes": "Gate 4\nbring ID"},
        None,
        False,
        id="make-raw-newline-in-string",
    ),
    pytest.param(
        "make/form.urlencoded",
        FORM,
        {
            "external_id": "MK-5531",
            "email": "bruno@example.com",
            "first_name": "Bruno",
            "tag": ["vip", "early-bird"],
        },
        None,
        True,
        id="make-form",
    ),
    pytest.param(
        "make/multipart.bin",
        f'multipart/form-data; boundary="{MAKE_BOUNDARY}"',
        {"external_id": "MK-5531", "prénom": "Zoë", "tag": ["vip", "early-bird"]},
        None,
        False,
        id="make-multipart",
    ),
    pytest.param(
        "make/text-plain-json.txt",
        "text/plain",
        {"external_id": "MK-5531", "email": "bruno@example.com"},
        None,
        False,
        id="make-text-plain-json",
    ),
    pytest.param(
        "make/unicode-emoji.json",
        "application/json; charset=utf-8",
        {
            "first_name": "Zoë 🎉",
            "prénom": "Zoë",
            "nom_de_famille": "Ñúñez",
            "city": "Zürich",
            "note": "日本語 ✓ 👩‍👩‍👧",
        },
        None,
        False,
        id="unicode-emoji",
    ),
]


@pytest.mark.parametrize(("name", "content_type", "fields", "key", "dry_run"), SAMPLE_CASES)
def test_samples(
    name: str, content_type: str, fields: Plain, key: str | None, dry_run: bool
) -> None:
    payload = parse_payload(sample(name), content_type)
    assert plain(payload) == fields
    assert payload.idempotency_key == key
    assert payload.dry_run is dry_run
    assert payload.received == list(fields)
    assert not set(RESERVED) & set(payload.fields)


@pytest.mark.parametrize(("name", "content_type", "fields", "key", "dry_run"), SAMPLE_CASES)
@pytest.mark.parametrize(
    "wrong_type",
    [None, "", "text/plain", "application/octet-stream", FORM, JSON, f"{JSON}, {JSON}"],
)
def test_samples_survive_a_wrong_content_type(
    name: str, content_type: str, fields: Plain, key: str | None, dry_run: bool, wrong_type: str
) -> None:
    body = sample(name)
    if name.endswith(".bin"):  # a wrong header has no boundary: it is sniffed from the body
        wrong_type = wrong_type and wrong_type.replace(JSON, "multipart/form-data")
    assert plain(parse_payload(body, wrong_type)) == fields


def test_unflatten_on_and_off_give_the_same_fields() -> None:
    flat = parse_payload(sample("zapier/json.json"), JSON)
    nested = parse_payload(sample("zapier/unflatten.json"), JSON)
    assert plain(flat) == plain(nested)


@pytest.mark.parametrize(
    ("body", "content_type", "fields"),
    [
        # flattening and values
        (b'{"person": {"email": "a@b.c"}}', JSON, {"person__email": "a@b.c"}),
        (b'{"a": {"b": {"c": "deep"}}}', JSON, {"a__b__c": "deep"}),
        (b'{"tags": ["x", "y"]}', JSON, {"tags": ["x", "y"]}),
        (b'{"tags": ["x"]}', JSON, {"tags": ["x"]}),
        (b'{"tags": ["", null, " "]}', JSON, {}),
        (
            b'{"items": [{"sku": "A"}, {"sku": "B"}]}',
            JSON,
            {"items__0__sku": "A", "items__1__sku": "B"},
        ),
        (b'{"m": [1, [2, 3], {"k": 4}]}', JSON, {"m__0": "1", "m__1": ["2", "3"], "m__2__k": "4"}),
        (
            b'{"n": 12, "f": 12.5, "t": true, "x": false}',
            JSON,
            {"n": "12", "f": "12.5", "t": "true", "x": "false"},
        ),
        (
            b'{"big": 123456789012345678901234567890}',
            JSON,
            {"big": "123456789012345678901234567890"},
        ),
        (b'{"e": 1e3, "neg": -0.5}', JSON, {"e": "1000.0", "neg": "-0.5"}),
        (
            b'{"a": "  padded  ", "b": "   ", "c": "", "d": null, "e": {}, "f": []}',
            JSON,
            {"a": "padded"},
        ),
        (b'{"a": "\\u00e9"}', JSON, {"a": "é"}),
        (b'\xef\xbb\xbf{"a": "1"}', JSON, {"a": "1"}),
        (b'  \r\n {"a": "1"} \n', JSON, {"a": "1"}),
        (b'[{"a": "1"}]', JSON, {"a": "1"}),
        (b"[]", JSON, {}),
        (b"{}", JSON, {}),
        # repeated keys and keys that normalise alike
        (b"tag=a&tag=b", FORM, {"tag": ["a", "b"]}),
        (b"tag=a&tag=a", FORM, {"tag": ["a", "a"]}),
        (b"tag=a&tag=&tag=b", FORM, {"tag": ["a", "b"]}),
        (b"First+Name=Ana&first_name=Ana", FORM, {"first_name": "Ana"}),
        (b"First+Name=Ana&first-name=Anna", FORM, {"first_name": ["Ana", "Anna"]}),
        (b'{"Email": "a@b.c", "email": "a@b.c"}', JSON, {"email": "a@b.c"}),
        (b'{"Email": "a@b.c", "email": "x@y.z"}', JSON, {"email": ["a@b.c", "x@y.z"]}),
        (b'{"a": "1", "a": "2"}', JSON, {"a": ["1", "2"]}),
        (b'{"person": {"email": "a"}, "person__email": "a"}', JSON, {"person__email": "a"}),
        # form details
        (b"a=1&b=2\n", FORM, {"a": "1", "b": "2"}),
        (b"a=1&b=2\n", "text/plain", {"a": "1", "b": "2"}),
        (b"note=line+1%0Aline+2", None, {"note": "line 1\nline 2"}),
        (b"a=x%3Dy&b=1+2", FORM, {"a": "x=y", "b": "1 2"}),
        (b"a=1&&b=2&", FORM, {"a": "1", "b": "2"}),
        (b"flag&a=1", FORM, {"a": "1"}),
        (b"first name=Ana", FORM, {"first_name": "Ana"}),
        ("name=Zoë 🎉".encode(), FORM, {"name": "Zoë 🎉"}),
        (b"name=Zo%C3%AB+%F0%9F%8E%89", FORM, {"name": "Zoë 🎉"}),
        (b"%20=blank-key&+=x", FORM, {}),
        # reserved-looking names that are not reserved
        (b'{"meta": {"dry_run": "1"}}', JSON, {"meta__dry_run": "1"}),
    ],
)
def test_fields(body: bytes, content_type: str, fields: Plain) -> None:
    assert plain(parse_payload(body, content_type)) == fields


def test_received_lists_non_empty_fields_in_arrival_order() -> None:
    body = b"b=2&empty=&a=1&B=2&c=%20&idempotency_key=k&d=4"
    payload = parse_payload(body, FORM)
    assert payload.received == ["b", "a", "d"]
    assert payload.received == list(payload.fields)


@pytest.mark.parametrize(
    ("body", "key", "dry_run"),
    [
        (b"a=1", None, False),
        (b"idempotency_key=+abc-123+", "abc-123", False),
        (b"Idempotency-Key=abc", "abc", False),
        (b"idempotency_key=", None, False),
        (b"idempotency_key=one&idempotency_key=two", "one", False),
        (b"dry_run=1", None, True),
        (b"dry_run=TRUE", None, True),
        (b"dry_run=Yes", None, True),
        (b"dry_run=on", None, True),
        (b"dry_run=y", None, True),
        (b"Dry+Run=true", None, True),
        (b"dry_run=0", None, False),
        (b"dry_run=false", None, False),
        (b"dry_run=no", None, False),
        (b"dry_run=", None, False),
        (b'{"dry_run": true, "idempotency_key": 42}', "42", True),
        (b'{"dry_run": false}', None, False),
        (b'{"dry_run": null, "idempotency_key": null}', None, False),
    ],
)
def test_reserved_fields(body: bytes, key: str | None, dry_run: bool) -> None:
    payload = parse_payload(body, None)
    assert payload.idempotency_key == key
    assert type(payload.idempotency_key) is (str if key else type(None))
    assert payload.dry_run is dry_run
    assert not set(RESERVED) & set(payload.fields)
    assert not set(RESERVED) & set(payload.received)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        JSON,
        f"{JSON}, {JSON}",
        f"{JSON};charset=UTF-8, {JSON}",
        "APPLICATION/JSON; Charset=UTF-8",
        "application/vnd.api+json",
        "application/merge-patch+json",
        "text/plain",
        "text/plain; charset=utf-8",
        FORM,
        "multipart/form-data",
        "multipart/form-data; boundary=nope",
        "application/xml",
        "application/octet-stream",
        "nonsense",
        "application/json; charset=no-such-charset",
    ],
)
def test_json_is_sniffed_whatever_the_content_type(content_type: str | None) -> None:
    payload = parse_payload(b'{"email": "a@b.c", "tags": ["x"]}', content_type)
    assert plain(payload) == {"email": "a@b.c", "tags": ["x"]}


@pytest.mark.parametrize("content_type", [None, "", "text/plain", JSON, f"{JSON}, {JSON}", "x/y"])
def test_form_is_sniffed_whatever_the_content_type(content_type: str | None) -> None:
    payload = parse_payload(b"email=a%40b.c&tag=x&tag=y", content_type)
    assert plain(payload) == {"email": "a@b.c", "tag": ["x", "y"]}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "multipart/form-data",  # boundary missing: sniffed from the first line
        "multipart/form-data; boundary=wrong",
        "multipart/form-data; boundary=XyZ",
        'multipart/form-data; boundary="XyZ"; charset=utf-8',
        JSON,
        FORM,
    ],
)
def test_multipart_boundary_is_sniffed(content_type: str | None) -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="Email"\r\n\r\n'
        b"a@b.c\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="upload"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"\x00\xff\xfe--Xy\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="note"\r\n'
        b"Content-Type: text/plain; charset=latin-1\r\n\r\n"
        b"caf\xe9\r\n"
        b"--XyZ--\r\n"
    )
    assert plain(parse_payload(body, content_type)) == {"email": "a@b.c", "note": "café"}


def test_multipart_details() -> None:
    body = (
        b"preamble\r\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name="t"\r\n\r\n'
        b"  one  \r\n"
        b"--b\n"  # bare LF line endings are read too
        b'Content-Disposition: form-data; name="t"\n\n'
        b"two\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name="empty"\r\n\r\n'
        b"\r\n"
        b"--b\r\n"
        b"Content-Disposition: form-data\r\n\r\n"  # no name: ignored
        b"x\r\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name="f"; filename=""\r\n\r\n'  # empty file input
        b"\r\n"
        b"--b--\r\n"
        b'epilogue\r\nContent-Disposition: form-data; name="late"\r\n\r\nx\r\n'
    )
    payload = parse_payload(body, "multipart/form-data; boundary=b")
    assert plain(payload) == {"t": ["one", "two"]}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("First Name", "first_name"),
        ("first-name", "first_name"),
        (" E-Mail ", "e_mail"),
        ("EMAIL", "email"),
        ("first  -  name", "first_name"),
        ("first\tname", "first_name"),
        ("first_name", "first_name"),
        ("person__email", "person__email"),
        ("_private", "_private"),
        ("Prénom", "prénom"),
        ("Pre\u0301nom", "prénom"),  # decomposed é
        ("PRE\u0301NOM", "prénom"),
        ("Straße", "strasse"),
        ("\ufeffemail", "email"),
        ("emoji 🎉", "emoji_🎉"),
        ("meta_Source", "meta_source"),
        ("   ", ""),
        ("", ""),
    ],
)
def test_normalise_key(key: str, expected: str) -> None:
    assert normalise_key(key) == expected
    assert normalise_key(expected) == expected


def test_flattened_key_parts_are_normalised() -> None:
    body = '{"Person": {"E-Mail": "a@b.c", "First Name": "Zoë"}, "": {"x": 1}, "b": {" ": 2}}'
    payload = parse_payload(body.encode(), JSON)
    assert plain(payload) == {"person__e_mail": "a@b.c", "person__first_name": "Zoë"}


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n", b"\n\n  \t"])
@pytest.mark.parametrize("content_type", [None, JSON, FORM, "text/plain", "application/xml"])
def test_empty_body_is_an_empty_payload(body: bytes, content_type: str | None) -> None:
    assert parse_payload(body, content_type) == Payload(
        fields={}, idempotency_key=None, dry_run=False, received=[]
    )


def test_declared_latin1_charset() -> None:
    body = "first_name=Zoë&city=Zürich".encode("latin-1")
    payload = parse_payload(body, f"{FORM}; charset=ISO-8859-1")
    assert plain(payload) == {"first_name": "Zoë", "city": "Zürich"}
    body = b"first_name=Zo%EB"
    assert plain(parse_payload(body, f"{FORM}; charset=latin-1")) == {"first_name": "Zoë"}
    body = '{"first_name": "Zoë"}'.encode("latin-1")
    assert plain(parse_payload(body, "text/plain; charset=latin-1")) == {"first_name": "Zoë"}


# --- errors -------------------------------------------------------------------------------------


def check_error(exc: PayloadError, status: int, code: str) -> dict[str, str]:
    assert exc.status == status
    assert exc.code == code
    error = exc.as_dict()
    assert error["code"] == code
    assert len(exc.message) < MESSAGE_LIMIT
    assert exc.hint
    assert "Zapier" in exc.hint or "Make" in exc.hint
    return error


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (
            sample("zapier/custom-request-quotes.json"),
            JSON,
            "Expecting ',' delimiter at line 4, column 23",
        ),
        (
            sample("zapier/custom-request-quotes.json"),
            FORM,
            "Expecting ',' delimiter at line 4, column 23",
        ),
        (
            b'{"a": "1",}',
            JSON,
            "Expecting property name enclosed in double quotes at line 1, column 11",
        ),
        (b'{"a": "1"', None, "Expecting ',' delimiter at line 1, column 10"),
        (
            b"{'a': '1'}",
            "text/plain",
            "Expecting property name enclosed in double quotes at line 1, column 2",
        ),
        (b'{"a": "1"} {"b": 2}', JSON, "Extra data at line 1, column 12"),
        (b"hello there", JSON, "Expecting value at line 1, column 1"),
        (b"[1, 2", JSON, "Expecting ',' delimiter at line 1, column 6"),
        (
            '{\n  "name": "Zoë 🎉",\n  "x": tru\n}'.encode(),
            JSON,
            "Expecting value at line 3, column 8",
        ),
    ],
)
def test_invalid_json_gives_line_and_column(
    body: bytes, content_type: str | None, where: str
) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_payload(body, content_type)
    error = check_error(caught.value, 400, "invalid_body")
    assert error["message"] == f"The body is not valid JSON: {where}."
    assert "Payload Type JSON" in caught.value.hint
    assert "Create JSON" in caught.value.hint


@pytest.mark.parametrize(
    ("body", "says", "hint"),
    [
        (b'[{"a": 1}, {"a": 2}]', "list of 2 records", "Wrap Request In Array"),
        (
            json.dumps([{"a": i} for i in range(500)]).encode(),
            "list of 500 records",
            "Wrap Request In Array",
        ),
        (b"[1, 2]", "list of 2 records", "Wrap Request In Array"),
        (b'["a"]', "a list, not an object", "Wrap Request In Array"),
        (b"[[]]", "a list, not an object", "Wrap Request In Array"),
        (b'"just text"', "single value", "Payload Type JSON"),
        (b"12", "single value", "Payload Type JSON"),
        (b"null", "single value", "Payload Type JSON"),
        (b"true", "single value", "Payload Type JSON"),
    ],
)
def test_json_that_is_not_one_object(body: bytes, says: str, hint: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_payload(body, JSON)
    check_error(caught.value, 400, "invalid_body")
    assert says in caught.value.message
    assert hint in caught.value.hint


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'<?xml version="1.0"?><member><email>a@b.c</email></member>', "application/xml"),
        (b"<member><email>a@b.c</email></member>", JSON),
        (b"<member/>", None),
        (b"<html><body>Error</body></html>", "text/html"),
        (b"Hello, please enrol Ana.", "text/plain"),
        (b"Hello, please enrol Ana.", None),
        (b"email: a@b.c\nname: Ana", None),
        (b"email=a@b.c\nname=Ana", None),  # line-separated: not what Zapier or Make send
        (b"just some words", FORM),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image/png"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", None),
        (b"\x00\x01\x02a=b", None),
        (b"a=b\x00c", FORM),
        (b"--not-multipart\r\nhello\r\n", None),
    ],
)
def test_nothing_readable_is_415(body: bytes, content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_payload(body, content_type)
    check_error(caught.value, 415, "unsupported_media_type")
    assert "Payload Type to Form or JSON" in caught.value.hint


def test_415_names_the_declared_content_type() -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_payload(b"<a/>", "application/xml; charset=utf-8")
    assert "'application/xml'" in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"name": "Zo\xeb"}', JSON),
        (b'{"name": "Zo\xeb"}', None),
        (b"name=Zo\xeb", FORM),
        (b"name=Zo\xeb", None),
        (b"name=Zo\xeb", "text/plain; charset=utf-8"),
        (b"name=Zo%EB", FORM),  # percent-decoded bytes must be UTF-8 too
        (b'--b\r\nContent-Disposition: form-data; name="n"\r\n\r\nZo\xeb\r\n--b--\r\n', None),
        (b'--b\r\nContent-Disposition: form-data; name="N\xe9"\r\n\r\nx\r\n--b--\r\n', None),
    ],
)
def test_invalid_utf8_is_400(body: bytes, content_type: str | None) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_payload(body, content_type)
    check_error(caught.value, 400, "invalid_body")
    assert "UTF-8" in caught.value.message
    assert "charset=latin-1" in caught.value.hint


def test_invalid_utf8_names_the_byte() -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_payload(b'{"name": "Zo\xeb"}', JSON)
    assert caught.value.message == "The body is not valid UTF-8 text (byte 0xeb at position 12)."


def test_invalid_multipart_value_names_its_field() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="First Name"\r\n\r\n\xff\r\n--b--\r\n'
    with pytest.raises(InvalidBody) as caught:
        parse_payload(body, "multipart/form-data; boundary=b")
    assert caught.value.field == "first_name"
    assert caught.value.as_dict()["message"].startswith("first_name: ")


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":' * 40 + b'"x"' + b"}" * 40,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
)
def test_too_deep_json_is_400(body: bytes) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_payload(body, JSON)
    check_error(caught.value, 400, "invalid_body")
    assert "nest" in caught.value.message


def test_nesting_within_the_limit_is_read() -> None:
    body = b'{"a":' * 31 + b'"x"' + b"}" * 31
    assert plain(parse_payload(body, JSON)) == {"__".join(["a"] * 31): "x"}


# --- size ---------------------------------------------------------------------------------------

MIB = 1 << 20


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"&".join([b"t=v"] * (MIB // 4)), FORM, id="one-repeated-form-key"),
        pytest.param(
            b"{" + b",".join(b'"k%d":1' % i for i in range(MIB // 10)) + b"}",
            JSON,
            id="many-json-keys",
        ),
        pytest.param(
            b'{"a":' * 30 + b"{" + b",".join(b'"k%d":1' % i for i in range(MIB // 12)) + b"}" * 31,
            JSON,
            id="many-deep-keys",
        ),
        pytest.param(b"a" * MIB, None, id="prose"),
        pytest.param((b"a=b&" * (MIB // 4))[:-8] + b"bad key", None, id="form-with-bad-tail"),
    ],
)
def test_a_mebibyte_body_is_read_quickly(body: bytes, content_type: str | None) -> None:
    started = time.perf_counter()
    with contextlib.suppress(PayloadError):
        parse_payload(body, content_type)
    assert time.perf_counter() - started < 10


# The common body (each name once, one text) takes a shortcut past the grouping: it must read
# exactly as the grouping reads it, and leave every other body to the grouping.
_NAMES = st.sampled_from(["email", "Email", "e_mail", "first_name", "", "a__b", "tags"])
_TEXTS = st.text(alphabet=" ab\t,é", max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.one_of(_TEXTS, st.lists(_TEXTS, max_size=3))), max_size=6))
def test_the_shortcut_for_plain_forms_reads_every_body_as_the_grouping_does(raw):
    from relay.forms.payloads import _each_once, _merged, _name

    pairs = [((key,), _name(key), value) for key, value in raw]
    shortcut = _each_once(pairs)
    if shortcut is None:
        assert len({name for _, name, _ in pairs}) < len(pairs) or any(
            isinstance(value, list) for _, _, value in pairs
        )
        return
    merged = _merged(pairs, clean=True)
    assert shortcut == merged
    assert [(type(v), v.field) for v in shortcut.values()] == [
        (type(v), v.field) for v in merged.values()
    ]
    assert list(shortcut) == list(merged)  # the order fields arrived in


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet="ab=&+%2041é", max_size=24), st.sampled_from(["utf-8", "latin-1"]))
def test_form_bodies_split_exactly_as_parse_qsl_splits_them(text, charset):
    from urllib.parse import parse_qsl

    from relay.forms.payloads import MAX_FIELDS, form_pairs

    def outcome(read):
        try:
            return read()
        except (UnicodeError, ValueError) as exc:
            return type(exc)

    expected = outcome(lambda: parse_qsl(text, keep_blank_values=True, encoding=charset,
                                         errors="strict", max_num_fields=MAX_FIELDS))  # fmt: skip
    assert outcome(lambda: form_pairs(text, charset)) == expected


def test_a_form_past_the_field_limit_is_refused_as_before():
    from relay.forms.payloads import MAX_FIELDS

    with pytest.raises(InvalidBody, match="more than"):
        parse_payload("&".join(["a=1"] * (MAX_FIELDS + 1)).encode(),
                      "application/x-www-form-urlencoded")  # fmt: skip

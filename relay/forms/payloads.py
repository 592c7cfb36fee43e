"""Request body → flat, normalised fields (SPEC "Payloads"). Sans-I/O: bytes and strings only.

Zapier and Make users pick payload settings they cannot see the effect of, so the Content-Type
header is a hint, not a contract: the body is sniffed and read as JSON, form data or multipart,
whatever the header says. Templates then see one shape whatever was sent:

    {"Person": {"E-Mail": " a@b.c "}, "tags": ["x"]}   →   person__e_mail = "a@b.c", tags = ["x"]
    tag=x&tag=y&First+Name=Ana                        →   tag = ["x", "y"], first_name = "Ana"

Every value is text wrapped in `FieldValue`/`FieldList` so later errors can name its field.
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from relay.brokentext import is_broken, mend_text
from relay.errors import InvalidBody, InvalidField, UnsupportedMediaType, quote_value
from relay.forms.fields import FieldList, Fields, FieldValue

__all__ = ["RESERVED", "Payload", "is_yes", "normalise_key", "parse_payload"]

RESERVED = ("idempotency_key", "dry_run")
MAX_DEPTH = 32  # Zapier unflattens to 6 levels; deeper is a mistake
# A zap maps tens of fields, a whole shop order a few hundred: more is a paste gone wrong or an
# attack, and reading 100,000 of them costs a second of a worker.
MAX_FIELDS = 2_000
SEPARATOR = "__"  # Zapier's Unflatten separator, so flat and nested Zapier bodies agree
_YES = frozenset({"1", "true", "yes", "on", "y"})

_SPACES_HYPHENS = re.compile(r"[\s\-]+")
_PARAM = re.compile(r';\s*([^\s=;,]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')
# k=v&k=v on one line with no whitespace in keys: form data, not prose or a pasted document.
_FORM = re.compile(r"[^\s=&]+=[^&\r\n]*(?:&+[^\s=&]+=[^&\r\n]*)*&*")
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOUNDARY_LINE = re.compile(rb"--(\S{1,200})[ \t]*\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")

_JSON_HINT = (
    "Zapier's Custom Request and Make's Raw body break when a mapped value contains quotes or "
    "newlines: use Payload Type JSON in Zapier, or Make's JSON › Create JSON module."
)
_ARRAY_HINT = (
    "In Zapier set Wrap Request In Array to No; in Make send one record per request "
    "(put an Iterator before the HTTP module)."
)
_OBJECT_HINT = (
    'Send an object of named fields, e.g. {"email": "ana@example.com"}: in Zapier use Payload '
    "Type JSON with Data rows; in Make use Body type Raw with Make's JSON › Create JSON module."
)
_SURROGATE_HINT = (
    "A step before this one cut an emoji or another character in half; map the original "
    "text, or clean it with Zapier's Formatter › Text or Make's replace()."
)
_CHARSET_HINT = (
    "Zapier and Make send UTF-8; if the text comes from an older system, add its encoding to "
    "the Content-Type header, e.g. '; charset=latin-1'."
)


@dataclass(frozen=True)
class Payload:
    """What a template sees of a request body, plus the reserved fields the relay acts on."""

    fields: Fields = field(default_factory=dict)  # flat, normalised, reserved keys removed
    idempotency_key: str | None = None
    dry_run: bool = False
    received: list[str] = field(default_factory=list)  # non-empty field names, arrival order


def is_yes(flag: str | None) -> bool:
    """A reserved switch (`dry_run` field, `?dry_run=`, `X-Relay-Dry-Run`) that is on."""
    return flag is not None and flag.strip().lower() in _YES


def normalise_key(key: str) -> str:
    """`" First-Name "` → `first_name`: NFC, trimmed, case-folded, spaces/hyphens read as `_`."""
    # Canonical caseless form (NFD, casefold, then NFC) so `é` typed either way is one key.
    key = unicodedata.normalize("NFC", unicodedata.normalize("NFD", key).casefold())
    key = key.strip().strip("\ufeff\u200b").strip()  # spreadsheet exports leave BOMs behind
    return _SPACES_HYPHENS.sub("_", key)


_cached_name = lru_cache(maxsize=1024)(normalise_key)  # forms repeat the same few keys


def _name(key: str) -> str:
    # Only short keys are cached, so hostile bodies cannot pin megabytes between requests.
    return _cached_name(key) if len(key) <= 64 else normalise_key(key)


def parse_payload(body: bytes, content_type: str | None) -> Payload:
    """Read a Zapier/Make body whatever its Content-Type; raise InvalidBody or 415 if unreadable."""
    media, params = _media_type(content_type)
    if not body.strip():
        return Payload()
    pairs = _read(body, media, params)
    return _collect(pairs)


# --- Reading: body → (raw key path, normalised name, text or JSON array of texts) ---------------

Pair = tuple[tuple[str, ...], str, str | list[str]]


def _media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """`"application/json, application/json; charset=UTF-8"` → ("application/json", {...})."""
    if not header:
        return "", {}
    # A duplicated header arrives comma-joined; the first media type is as good as any.
    media = re.split(r"[;,]", header, maxsplit=1)[0].strip().lower()
    params: dict[str, str] = {}
    for name, value in _PARAM.findall(header):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name.lower(), value)
    return media, params


def _read(body: bytes, media: str, params: dict[str, str]) -> list[Pair]:
    """Multipart by boundary, JSON by its first character, form by shape; the header breaks ties."""
    boundary = _multipart_boundary(body, params.get("boundary"))
    if boundary is not None:
        return _read_multipart(body, boundary, _charset(params))
    text = _decode(body, _charset(params), media)
    start = text.lstrip()[:1]
    if start in ("{", "["):
        return _read_json(text)
    if start == "<":  # XML or HTML: Zapier's XML payload type, or an error page pasted in
        raise UnsupportedMediaType(f"The body looks like XML{_declared(media)}; send JSON or form.")
    stripped = text.strip()
    if not _BINARY.search(stripped):
        if _FORM.fullmatch(stripped) or (media.endswith("urlencoded") and "=" in stripped):
            return _read_form(stripped, _charset(params))
        if media == "application/json" or media.endswith("+json"):
            return _read_json(text)  # declared JSON that is not: report where it breaks
    raise UnsupportedMediaType(f"The body is neither JSON nor form data{_declared(media)}.")


def _declared(media: str) -> str:
    return f" (Content-Type {quote_value(media)})" if media else ""


# Codecs Python knows that are not a way to write text: they decode escapes or nothing at all.
_NOT_CHARSETS = frozenset({"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape"})


def _charset(params: dict[str, str]) -> str:
    name = params.get("charset", "utf-8")
    try:
        codec = codecs.lookup(name)
    except LookupError:
        return "utf-8"  # an unknown label is a typo more often than an exotic encoding
    if not getattr(codec, "_is_text_encoding", True) or codec.name in _NOT_CHARSETS:
        return "utf-8"  # base64, zlib, rot13…: transforms, not character sets
    return codec.name


def _decode(body: bytes, charset: str, media: str) -> str:
    try:
        text = body.decode(charset)
    except UnicodeError as exc:
        # Text that merely has a bad byte is a 400; images and other binaries are a 415.
        looks = body.decode("latin-1").lstrip()
        if (media and _is_text(media)) or looks[:1] in ("{", "[") or _FORM.fullmatch(looks.strip()):
            raise InvalidBody(
                f"The body is not valid {charset.upper()} text{_position(body, exc)}.",
                hint=_CHARSET_HINT,
            ) from None
        raise UnsupportedMediaType(f"The body is binary, not text{_declared(media)}.") from None
    return text.removeprefix("\ufeff")


def _too_many_fields() -> InvalidBody:
    return InvalidBody(
        f"The body has more than {MAX_FIELDS:,} fields; the relay reads at most that many.",
        hint="Map only the fields the pass needs, not a whole record or a list of records.",
    )


def _position(body: bytes, exc: UnicodeError) -> str:
    start = getattr(exc, "start", None)
    if not isinstance(start, int) or not 0 <= start < len(body):
        return ""
    return f" (byte 0x{body[start]:02x} at position {start})"


def _read_form(text: str, charset: str) -> list[Pair]:
    try:
        pairs = form_pairs(text, charset)
    except UnicodeError as exc:
        raise InvalidBody(
            f"A form value is not valid {charset.upper()} once %-decoded "
            f"({getattr(exc, 'reason', 'undecodable')}).",
            hint=_CHARSET_HINT,
        ) from None
    except ValueError:  # "Max number of fields exceeded", as parse_qsl says it
        raise _too_many_fields() from None
    return [((key,), _name(key), value) for key, value in pairs]


def form_pairs(text: str, charset: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)`,
    in half its time (~2 µs of a form's ~5): a part with no `%` or `+` is taken as it is."""
    if 1 + text.count("&") > MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "+" in part:
            name, value = name.replace("+", " "), value.replace("+", " ")
        if "%" in part:
            name, value = unquote(name, charset, "strict"), unquote(value, charset, "strict")
        pairs.append((name, value))
    return pairs


def _read_json(text: str) -> list[Pair]:
    try:
        # strict=False lets raw newlines/tabs inside strings through (Make Raw bodies have them);
        # integers stay text so long ids keep every digit; objects become tuples of pairs so
        # repeated keys survive and objects stay distinct from arrays (lists).
        data = json.loads(
            text, strict=False, parse_int=str, parse_constant=str, object_pairs_hook=tuple
        )
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            hint=_JSON_HINT,
        ) from None
    except RecursionError:
        raise InvalidBody("The JSON body is nested too deeply.", hint=_OBJECT_HINT) from None
    if isinstance(data, list):
        if len(data) > 1:
            raise InvalidBody(
                f"The body is a list of {len(data)} records; send one record per request.",
                hint=_ARRAY_HINT,
            )
        data = data[0] if data else ()  # Zapier's Wrap Request In Array sends [{…}]
        if not isinstance(data, tuple):
            raise InvalidBody("The body is a list, not an object of fields.", hint=_ARRAY_HINT)
    if not isinstance(data, tuple):
        raise InvalidBody("The body is a single value, not an object of fields.", hint=_OBJECT_HINT)
    return _flatten(data)


def _flatten(obj: tuple[tuple[str, Any], ...]) -> list[Pair]:
    """Nested objects → `a__b` paths; scalar arrays stay lists; other arrays get `a__0` indexes."""
    pairs: list[Pair] = []
    # An explicit stack, not recursion, keeps arrival order without deep Python frames.
    # Names are built as we descend, so each key part is normalised once.
    stack: list[tuple[tuple[str, ...], str, Any]] = [((k,), _name(k), v) for k, v in reversed(obj)]
    while stack:
        if len(pairs) + len(stack) > MAX_FIELDS:
            raise _too_many_fields()
        path, name, value = stack.pop()
        if not name:
            continue  # a key part was blank: no name to give this value or anything under it
        if len(path) > MAX_DEPTH:  # also bounds key length, so flattening stays linear
            raise InvalidBody(
                f"The JSON body nests deeper than {MAX_DEPTH} levels.", hint=_OBJECT_HINT
            )
        if isinstance(value, tuple):
            stack.extend(((*path, k), _child(name, k), v) for k, v in reversed(value))
        elif isinstance(value, list) and not any(isinstance(v, tuple | list) for v in value):
            pairs.append((path, name, [_text(v) for v in value]))
        elif isinstance(value, list):
            items = reversed(range(len(value)))
            stack.extend(((*path, str(i)), f"{name}{SEPARATOR}{i}", value[i]) for i in items)
        else:
            pairs.append((path, name, _text(value)))
    return pairs


def _child(name: str, key: str) -> str:
    part = _name(key)
    return f"{name}{SEPARATOR}{part}" if part else ""


def _text(value: object) -> str:
    if value is None:
        return ""  # null counts as missing, like an empty string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _multipart_boundary(body: bytes, declared: str | None) -> bytes | None:
    """The declared boundary if the body uses it, else one sniffed from a `--…` first line."""
    if declared:
        boundary = declared.encode("utf-8")
        if b"--" + boundary in body:
            return boundary
    found = _BOUNDARY_LINE.match(body.lstrip())
    if found and b"content-disposition" in body[found.end() : found.end() + 1000].lower():
        return found.group(1)
    return None


def _read_multipart(body: bytes, boundary: bytes, charset: str) -> list[Pair]:
    pairs: list[Pair] = []
    chunks = body.split(b"--" + boundary, MAX_FIELDS + 2)  # preamble, fields, the closing "--"
    if len(chunks) > MAX_FIELDS + 2:
        raise _too_many_fields()
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter; anything after is epilogue
        head_end = _HEAD_END.search(chunk)
        if head_end is None:
            continue
        headers = _part_headers(chunk[: head_end.start()], charset)
        disposition, params = _media_type(headers.get("content-disposition"))
        part_type, part_params = _media_type(headers.get("content-type"))
        name = params.get("name")
        is_file = "filename" in params or "filename*" in params or not _is_text(part_type)
        if disposition != "form-data" or not name or is_file:
            continue  # files are not fields, and their names are not kept anywhere
        part_charset = _charset(part_params) if "charset" in part_params else charset
        try:  # the CRLF before the next delimiter goes with the rest of the whitespace, later
            pairs.append(((name,), _name(name), chunk[head_end.end() :].decode(part_charset)))
        except UnicodeError:
            field = normalise_key(name)
            raise InvalidBody(
                f"The value is not valid {part_charset.upper()} text.",
                field=field,
                hint=_CHARSET_HINT,
                private=[field],  # a sender's key, which may be anything
            ) from None
    return pairs


def _part_headers(head: bytes, charset: str) -> dict[str, str]:
    try:
        text = head.decode(charset)
    except UnicodeError:
        message = f"A multipart field name is not valid {charset.upper()} text."
        raise InvalidBody(message, hint=_CHARSET_HINT) from None
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return headers


def _is_text(media: str) -> bool:
    return not media or media.startswith("text/") or "json" in media or "urlencoded" in media


# --- Collecting: pairs → flat fields --------------------------------------------------------------


def _collect(pairs: list[Pair]) -> Payload:
    """Drop empty values, merge repeats, and take out the reserved fields."""
    # One search over every name and value; only when it finds something, one per field, to
    # name the first broken one.
    clean = not is_broken("".join(
        name + "".join(value) if isinstance(value, list) else name + value
        for _, name, value in pairs
    ))  # fmt: skip
    fields = _each_once(pairs) if clean else None
    if fields is None:
        fields = _merged(pairs, clean)
    key, dry_run = (_first(fields.pop(name, None)) for name in RESERVED)
    return Payload(
        fields=fields,
        idempotency_key=key,
        dry_run=is_yes(dry_run),
        received=list(fields),
    )


def _each_once(pairs: list[Pair]) -> Fields | None:
    """The common body, each name once with one text (a form a zap maps): its fields, as
    `_merged` would make them, without its grouping (~5 µs); None for any other body."""
    if len({name for _, name, _ in pairs}) != len(pairs):
        return None
    fields: Fields = {}
    for _, name, value in pairs:
        if not isinstance(value, str):
            return None
        text = value.strip()
        if name and text:
            fields[name] = FieldValue(text, name)
    return fields


def _merged(pairs: list[Pair], clean: bool) -> Fields:
    """Fields from any pairs: repeated names and spellings merged, arrays kept as lists."""
    # name → raw key path → values: spellings of one name are merged, identical ones counted once
    grouped: dict[str, dict[tuple[str, ...], list[str]]] = {}
    listed: set[str] = set()  # names that arrived as a JSON array, so stay lists when alone
    for path, name, value in pairs:
        if not name:
            continue
        raw = value if isinstance(value, list) else [value]
        texts = [text for text in (v.strip() for v in raw) if text]
        if not clean:
            _refuse_broken_text(name, texts)
        if texts:
            grouped.setdefault(name, {}).setdefault(path, []).extend(texts)
            if isinstance(value, list):
                listed.add(name)
    fields: Fields = {}
    for name, spellings in grouped.items():
        seen: set[tuple[str, ...]] = set()
        values: list[FieldValue] = []
        for texts in spellings.values():
            if tuple(texts) not in seen:
                seen.add(tuple(texts))
                values.extend(FieldValue(text, name) for text in texts)
        many = len(values) > 1 or name in listed
        fields[name] = FieldList(values, name) if many else values[0]
    return fields


def _refuse_broken_text(name: str, texts: list[str]) -> None:
    """Refuse a field whose name or text holds an unpaired surrogate, naming the field."""
    if is_broken(name):
        shown = mend_text(name)
        quoted = quote_value(shown)
        raise InvalidField(
            f"A field name contains a broken character: {quoted}.",
            field=shown,
            hint=_SURROGATE_HINT,
            private=[quoted, shown],  # a sender's key, which may be anything
        )
    if any(is_broken(text) for text in texts):
        raise InvalidField(
            "contains a broken character (a NUL, or half of an emoji or other symbol).",
            field=name,
            hint=_SURROGATE_HINT,
        )


def _first(value: FieldValue | FieldList | None) -> str | None:
    """A reserved field's text; of repeated values the first wins."""
    return str(value[0] if isinstance(value, FieldList) else value) if value else None

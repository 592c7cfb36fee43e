"""A small protojson: request bodies decoded, and records rendered, the way grpc-gateway does,
over PassKit's own message definitions (`contract_message`, from
relay/passkit/passkit_contract.json, generated from PassKit's SDK).

PassKit's gateway maps JSON onto proto messages with protojson (passkit-api.md §0), so this
module applies the rules a client can trip over:

- fields are known by their lowerCamelCase JSON name or their snake_case proto name; a field
  the message does not define is refused (`unknown field`), and so is a second member of a
  oneof; `null` means "not set";
- strings must be JSON strings, bools JSON booleans; numbers may also be numeric strings;
  `float` is 32-bit (values are rounded as PassKit stores them), ints are whole and in range;
- enums take their name (or number); timestamps are RFC 3339 strings, rendered in UTC `Z`;
- `map<string,string>` values must be strings.

Errors read like protojson's (`proto: invalid value for string field tierId: 5`) but without
the `(line:col)` position, and they also name the field where protojson would not (timestamps,
nested objects, map values), so a relay user can tell which mapping is wrong.

Rendering follows grpc-gateway's `EmitUnpopulated`: every field of the message appears, unset
scalars as their zero value, unset messages and timestamps as `null`.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relay.passkit.contract import contract, enum_numbers
from relay.sandbox.errors import invalid

SCALARS = ("string", "bool", "float", "double", "int32", "uint32", "int64", "uint64")
_INT_RANGES = {
    "int32": (-(2**31), 2**31),
    "uint32": (0, 2**32),
    "int64": (-(2**63), 2**63),
    "uint64": (0, 2**64),
}
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Field:
    """One proto field: `kind` is a scalar name, "enum", "timestamp", "message", "map" (string
    to string) or "struct" (any JSON object, kept as sent)."""

    kind: str
    enum: Mapping[str, int] = field(default_factory=dict)
    message: Message | None = None
    repeated: bool = False


@dataclass(frozen=True)
class Message:
    name: str
    fields: Mapping[str, Field]
    oneofs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# The contract's scalar types as this module's field kinds.
_KINDS = {
    "string": "string", "bytes": "string", "Duration": "string", "bool": "bool",
    "float": "float", "double": "double", "Timestamp": "timestamp",
    "Struct": "struct", "Value": "struct", "ListValue": "struct",
    "int32": "int32", "sint32": "int32", "sfixed32": "int32",
    "uint32": "uint32", "fixed32": "uint32",
    "int64": "int64", "sint64": "int64", "sfixed64": "int64",
    "uint64": "uint64", "fixed64": "uint64",
}  # fmt: skip
_BUILT: dict[str, Message] = {}


def contract_message(name: str) -> Message:
    """PassKit's message `name` as the contract file describes it (built once)."""
    if name in _BUILT:
        return _BUILT[name]
    entry = contract()["messages"][name]
    fields: dict[str, Field] = {}
    oneofs = {group: tuple(members) for group, members in entry.get("oneofs", {}).items()}
    message = _BUILT[name] = Message(name, fields, oneofs)  # before fields: they may loop back
    for field_name, spec in entry["fields"].items():
        fields[field_name] = _contract_field(spec)
    return message


def _contract_field(spec: Mapping[str, Any]) -> Field:
    repeated = bool(spec.get("repeated"))
    if "map" in spec:
        return Field("map" if spec["map"] == "string" else "struct")
    if "enum" in spec:
        return Field("enum", enum=enum_numbers(spec["enum"]), repeated=repeated)
    if "message" in spec:
        return Field("message", message=contract_message(spec["message"]), repeated=repeated)
    return Field(_KINDS[spec["type"]], repeated=repeated)


def enum(*names: str, numbers: Mapping[str, int] | None = None) -> Field:
    """An enum field. Numbers are PassKit's where known (passed in), else declaration order."""
    return Field("enum", enum=dict(numbers or {n: i for i, n in enumerate(names)}))


def msg(full_name: str, /, **fields: Field | str | Message) -> Message:
    """Shorthand: `msg("Tier", id="string", person=PERSON, status=enum(...))`."""
    built: dict[str, Field] = {}
    for key, spec in fields.items():
        if isinstance(spec, Message):
            built[key] = Field("message", message=spec)
        elif isinstance(spec, str):
            built[key] = Field(spec)
        else:
            built[key] = spec
    return Message(full_name, built)


def repeated(kind: str) -> Field:
    return Field(kind, repeated=True)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _shown(value: Any) -> str:
    return json.dumps(value)  # like protojson's raw token: strings quoted, numbers bare


def float32(value: float) -> float:
    """Round to the nearest 32-bit float and back to the shortest decimal that round-trips,
    as protojson prints a `float` field (so 0.1 stays 0.1, 16777217 becomes 16777216)."""
    packed = struct.pack("<f", value)
    single: float = struct.unpack("<f", packed)[0]
    for digits in range(1, 10):
        shorter = float(f"{single:.{digits}g}")
        if struct.pack("<f", shorter) == packed:
            return shorter
    return single


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 with a `T`, seconds and a zone, as `google.protobuf.Timestamp` requires."""
    if not _TIMESTAMP.match(text):
        raise ValueError(text)
    fraction = re.search(r"\.(\d+)", text)
    base = re.sub(r"\.\d+", "", text).replace("Z", "+00:00")
    moment = datetime.fromisoformat(base).astimezone(UTC)
    if fraction:
        moment = moment.replace(microsecond=int(fraction.group(1)[:6].ljust(6, "0")))
    return moment


def format_timestamp(moment: datetime) -> str:
    """UTC with `Z`, and 0, 3 or 6 fraction digits like protojson."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        micro = f"{moment.microsecond:06d}"
        text += "." + (micro[:3] if micro.endswith("000") else micro)
    return text + "Z"


def _number(name: str, kind: str, value: Any) -> float | int:
    bad = invalid(f"proto: invalid value for {kind} field {name}: {_shown(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if not number.is_integer() or not low <= number < high:
            raise bad
        return int(value) if isinstance(value, int) else int(number)
    if kind == "float":
        if abs(number) > _FLOAT32_MAX:
            raise bad
        number = float32(number)
    return int(number) if number.is_integer() else number


def _scalar(name: str, spec: Field, value: Any) -> Any:
    kind = spec.kind
    if kind == "string":
        if not isinstance(value, str):
            raise invalid(f"proto: invalid value for string field {name}: {_shown(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise invalid(f"proto: invalid value for bool field {name}: {_shown(value)}")
        return value
    if kind == "enum":
        if isinstance(value, str) and value in spec.enum:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            for enum_name, number in spec.enum.items():
                if number == value:
                    return enum_name
        raise invalid(f"proto: invalid value for enum field {name}: {_shown(value)}")
    if kind == "timestamp":
        try:
            return format_timestamp(parse_timestamp(value if isinstance(value, str) else ""))
        except ValueError:
            raise invalid(
                f"proto: invalid google.protobuf.Timestamp value {_shown(value)} for field {name}"
            ) from None
    if kind == "message":
        assert spec.message is not None
        if not isinstance(value, dict):
            raise invalid(f"proto: unexpected token {_shown(value)} for field {name}")
        return decode(spec.message, value)
    if kind == "map":
        if not isinstance(value, dict):
            raise invalid(f"proto: unexpected token {_shown(value)} for field {name}")
        for key, item in value.items():
            if not isinstance(item, str):
                raise invalid(f"proto: invalid value for string field {name}.{key}: {_shown(item)}")
        return dict(value)
    if kind == "struct":
        if not isinstance(value, dict):
            raise invalid(f"proto: unexpected token {_shown(value)} for field {name}")
        return value
    return _number(name, kind, value)


def decode(message: Message, body: Any) -> dict[str, Any]:
    """A JSON value as the given message: only the fields that were set, normalised."""
    if not isinstance(body, dict):
        raise invalid(f"proto: syntax error: unexpected token {_shown(body)}, want an object")
    known = {name: name for name in message.fields} | {_snake(n): n for n in message.fields}
    decoded: dict[str, Any] = {}
    for key, value in body.items():
        name = known.get(key)
        if name is None:
            raise invalid(f'proto: unknown field "{key}" in {message.name}')
        if value is None:
            continue  # null means unset
        for group, members in message.oneofs.items():
            if name in members and any(other in decoded for other in members):
                raise invalid(
                    f"proto: error parsing {_shown(key)}: {message.name} should not have "
                    f"multiple {group} oneof fields"
                )
        spec = message.fields[name]
        if spec.repeated:
            if not isinstance(value, list):
                raise invalid(f"proto: unexpected token {_shown(value)} for field {name}")
            decoded[name] = [_scalar(name, spec, item) for item in value]
        else:
            decoded[name] = _scalar(name, spec, value)
    return decoded


_ZERO: dict[str, Any] = {
    "string": "",
    "bool": False,
    "float": 0,
    "double": 0,
    "int32": 0,
    "uint32": 0,
    "int64": "0",  # protojson writes 64-bit integers as strings
    "uint64": "0",
}


def render(message: Message, record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as grpc-gateway prints the message: every field, zero values for unset ones."""
    out: dict[str, Any] = {}
    for name, spec in message.fields.items():
        value = record.get(name)
        if spec.repeated:
            out[name] = list(value or [])
        elif spec.kind == "message":
            assert spec.message is not None
            out[name] = render(spec.message, value) if value is not None else None
        elif value is not None:
            # protojson prints a whole float without a fraction (0, not 0.0)
            whole = spec.kind in ("float", "double") and isinstance(value, float)
            out[name] = int(value) if whole and value.is_integer() else value
        elif spec.kind == "enum":
            out[name] = next((n for n, number in spec.enum.items() if number == 0),
                             next(iter(spec.enum)))  # fmt: skip
        elif spec.kind == "map":
            out[name] = {}
        else:
            out[name] = _ZERO.get(spec.kind)
    return out

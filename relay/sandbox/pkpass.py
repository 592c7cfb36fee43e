"""Apple Wallet bundles: what PassKit's `https://pub1.pskt.io/{passId}.pkpass` serves, roughly.

A `.pkpass` is a zip of `pass.json` (the fields, in sections: header, primary, secondary,
auxiliary, back; and a barcode), `en.lproj/pass.strings` (the labels, which `pass.json` names
by key), `icon.png`, `manifest.json` (the SHA-1 of every other file) and `signature`.

Built from the same records the pass card (`pages`) shows, with live PassKit's quirks that a
check should find: a pass of a program, campaign or production still in draft carries the
"Test Pass - Not for Commercial Use" back field, and a ticket issued without a ticket number
has a barcode reading "missing: ticketNumber". A blank name stays blank (no "—" here).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from typing import Any

from relay.sandbox.state import Record, State

PASS_TYPE = "pass.io.pskt.sandbox"  # noqa: S105 - a pass type, not a password
TEAM = "SANDBOX000"  # an Apple team id is 10 characters
DRAFT = "PROJECT_DRAFT"
TEST_PASS = "Test Pass - Not for Commercial Use"  # noqa: S105 - a pass's back field
LABELS = {
    "name": "Member",
    "holder": "Name",
    "points": "Points",
    "tier": "Tier",
    "status": "Status",
    "number": "Member no.",
    "program": "Program",
    "offer": "Offer",
    "code": "Code",
    "event": "Event",
    "venue": "Venue",
    "starts": "Starts",
    "seat": "Seat",
    "ticket": "Ticket",
    "notice": "Notice",
}


def _name(record: Record) -> str:
    person = record.get("person") or {}
    name = person.get("displayName") or " ".join(
        part for part in (person.get("forename"), person.get("surname")) if part
    )
    return str(name or "")


def _field(key: str, value: Any) -> dict[str, Any]:
    """A field whose label is a key of pass.strings, as PassKit writes them."""
    return {"key": key, "label": key, "value": value}


def _draft(project: Record) -> bool:
    return DRAFT in (project.get("status") or [])


def _content(state: State, pass_id: str) -> dict[str, Any] | None:
    """pass.json's style-specific part for a pass, or None if there is no such pass."""
    if pass_id in state.members:
        member = state.members[pass_id]
        project = state.programs.get(member["programId"], {})
        tier = state.tiers.get((member["programId"], member["tierId"]), {})
        return {
            "style": "storeCard",
            "project": project,
            "header": [_field("points", member.get("points", 0))],
            "primary": [_field("name", _name(member))],
            "secondary": [
                _field("tier", tier.get("name", member["tierId"])),
                _field("status", member.get("status", "")),
            ],
            "auxiliary": [_field("number", member.get("externalId", ""))],
            "barcode": pass_id,
        }
    if pass_id in state.coupons:
        coupon = state.coupons[pass_id]
        offer = state.offers.get(coupon["offerId"], {})
        return {
            "style": "coupon",
            "project": state.campaigns.get(coupon["campaignId"], {}),
            "header": [_field("status", coupon["status"])],
            "primary": [_field("offer", offer.get("offerShortTitle") or offer.get("offerTitle"))],
            "secondary": [_field("holder", _name(coupon))],
            "auxiliary": [_field("code", coupon.get("externalId", ""))],
            "barcode": coupon.get("externalId") or pass_id,
        }
    if pass_id in state.tickets:
        ticket = state.tickets[pass_id]
        event = state.events[ticket["eventId"]]
        seat = ticket.get("seatInfo") or {}
        seat_text = " ".join(f"{k} {seat[k]}" for k in ("section", "row", "seat") if seat.get(k))
        production = state.productions[event["productionId"]]
        number = ticket.get("ticketNumber", "")
        return {
            "style": "eventTicket",
            "project": production,
            "header": [_field("status", ticket["status"])],
            "primary": [_field("event", production.get("name", ""))],
            "secondary": [
                _field("holder", _name(ticket)),
                _field("venue", state.venues[event["venueId"]].get("name", "")),
            ],
            "auxiliary": [
                _field("starts", event["scheduledStartDate"]),
                _field("seat", seat_text or "General admission"),
                _field("ticket", number),
            ],
            # Live PassKit's template prints the placeholder it could not fill.
            "barcode": number or "missing: ticketNumber",
        }
    return None


def pass_json(state: State, pass_id: str) -> dict[str, Any] | None:
    content = _content(state, pass_id)
    if content is None:
        return None
    project = content["project"]
    back = [_field("program", project.get("name", ""))]
    if _draft(project):
        back.append(_field("notice", TEST_PASS))
    name = project.get("name") or "PassKit sandbox"
    return {
        "formatVersion": 1,
        "passTypeIdentifier": PASS_TYPE,
        "serialNumber": pass_id,
        "teamIdentifier": TEAM,
        "organizationName": name,
        "description": f"{name} (PassKit sandbox)",
        "foregroundColor": "rgb(255, 255, 255)",
        "backgroundColor": "rgb(31, 58, 95)",
        content["style"]: {
            "headerFields": content["header"],
            "primaryFields": content["primary"],
            "secondaryFields": content["secondary"],
            "auxiliaryFields": content["auxiliary"],
            "backFields": back,
        },
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": content["barcode"],
                "messageEncoding": "iso-8859-1",
            }
        ],
    }


def pass_strings(labels: dict[str, str]) -> bytes:
    """An Apple .strings file (`"key" = "value";` a line), UTF-8."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{quoted(k)} = {quoted(v)};\n" for k, v in labels.items()).encode()


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain square PNG (Wallet needs an icon.png)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pkpass(state: State, pass_id: str) -> bytes | None:
    """The .pkpass bundle for a pass, or None when there is no such pass."""
    content = pass_json(state, pass_id)
    if content is None:
        return None
    files = {
        "pass.json": json.dumps(content, indent=2, ensure_ascii=False).encode(),
        "en.lproj/pass.strings": pass_strings(LABELS),
        "icon.png": _png(29, (31, 58, 95)),
    }
    manifest = {name: hashlib.sha1(data).hexdigest() for name, data in files.items()}  # noqa: S324 - Apple's manifest is SHA-1
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    # Apple's `signature` is a detached PKCS #7 signature of manifest.json made with the pass
    # type's certificate from Apple; the sandbox has none, so this is a placeholder and Wallet
    # would refuse to install the bundle. Everything else is as PassKit serves it.
    files["signature"] = b"PassKit sandbox: not signed (no Apple pass type certificate)\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return out.getvalue()

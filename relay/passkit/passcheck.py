"""What the member actually sees: a pass's Apple Wallet file, read.

PassKit serves every pass as `{pass_url}.pkpass`, the bundle Apple Wallet installs: `pass.json`
holds the fields (header, primary, secondary, auxiliary, back) whose labels are keys of
`en.lproj/pass.strings`, and the barcode. Reading the two together shows the pass as the member
reads it, and finds what a template got wrong: an empty primary field, a blank name, a barcode
reading "missing: …" (a placeholder PassKit could not fill), or a draft's "Test Pass - Not for
Commercial Use" back field.

`read_pkpass` is zipfile and json only. `PassChecker` fetches (only under PASSKIT_PASS_URL,
at most MAX_BYTES within TIMEOUT seconds, never on the delivery path: the admin console asks)
and keeps each reading CACHE_SECONDS. Every failure is a `PassCheckError` of one plain sentence.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_BYTES = 5 * 1024 * 1024
PKPASS = "application/vnd.apple.pkpass"
TIMEOUT = 10.0
CACHE_SECONDS = 300.0
CACHE_SIZE = 256
SECTIONS = (
    ("header", "headerFields"),
    ("primary", "primaryFields"),
    ("secondary", "secondaryFields"),
    ("auxiliary", "auxiliaryFields"),
    ("back", "backFields"),
)
STYLES = ("boardingPass", "coupon", "eventTicket", "generic", "storeCard")
NAME_LABELS = frozenset({"name", "member", "holder", "member name", "full name", "customer"})
PASS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STRING = r'"((?:[^"\\]|\\.)*)"'
_ENTRY = re.compile(_STRING + r"\s*=\s*" + _STRING + r"\s*;")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


class PassCheckError(Exception):
    """Why the pass could not be read, in one sentence for the operator."""


@dataclass(frozen=True)
class PassField:
    section: str  # header | primary | secondary | auxiliary | back
    key: str
    label: str  # as the member reads it (pass.strings applied)
    value: str


@dataclass(frozen=True)
class PassReading:
    style: str  # storeCard, coupon, eventTicket, …
    organization: str
    fields: list[PassField]
    barcode: str | None  # the first barcode's message
    problems: list[str] = field(default_factory=list)

    def section(self, name: str) -> list[PassField]:
        return [f for f in self.fields if f.section == name]


def parse_strings(data: bytes) -> dict[str, str]:
    """An Apple .strings file (UTF-8, or UTF-16 with its byte-order mark) as a dict."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        text = data.decode("utf-8-sig", errors="replace")

    def unescape(raw: str) -> str:
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)

    return {unescape(k): unescape(v) for k, v in _ENTRY.findall(text)}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _problems(fields: list[PassField], barcode: str | None) -> list[str]:
    problems: list[str] = []
    primary = [f for f in fields if f.section == "primary"]
    if not primary:
        problems.append("The pass has no primary field: its face shows no main line.")
    for f in fields:
        named = "name" in f.key.lower() or f.label.strip().lower() in NAME_LABELS
        if named and not f.value:
            problems.append(f"The name ({f.label or f.key}) is blank: the member sees no name.")
        elif f.section == "primary" and not f.value:
            problems.append(f"The primary field {f.label or f.key} is empty: the pass's main "
                            "line is blank.")  # fmt: skip
        if f.section == "back" and "test pass" in f.value.lower():
            problems.append(f'The back of the pass says "{f.value}": the program is still a '
                            "draft, and its passes expire 48 hours after issue. Publish it "
                            "before real members get passes.")  # fmt: skip
    if barcode is not None and barcode.strip().lower().startswith("missing:"):
        problems.append(f'The barcode reads "{barcode}": PassKit had no value for it, so a '
                        "scanner reads that text instead of the pass.")  # fmt: skip
    return problems


def read_pkpass(data: bytes) -> PassReading:
    """pass.json read with en.lproj/pass.strings: the fields as the member reads them."""
    try:
        bundle = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise PassCheckError("The answer is not a wallet pass (.pkpass): not a zip file.") from None
    with bundle:
        sizes = {info.filename: info.file_size for info in bundle.infolist()}
        if "pass.json" not in sizes:
            raise PassCheckError("The wallet pass has no pass.json in it.")
        if sum(sizes.values()) > MAX_BYTES * 4:
            raise PassCheckError("The wallet pass unpacks to more than 20 MB: not read.")
        try:
            content = json.loads(bundle.read("pass.json").decode("utf-8-sig"))
            strings = (
                parse_strings(bundle.read("en.lproj/pass.strings"))
                if "en.lproj/pass.strings" in sizes
                else {}
            )
        except (ValueError, zipfile.BadZipFile, OSError, EOFError):
            raise PassCheckError("The wallet pass's pass.json could not be read.") from None
    if not isinstance(content, dict):
        raise PassCheckError("The wallet pass's pass.json is not a JSON object.")
    style = next((s for s in STYLES if isinstance(content.get(s), dict)), "")
    if not style:
        raise PassCheckError("The wallet pass's pass.json has no pass style (storeCard, …).")
    fields: list[PassField] = []
    for section, key in SECTIONS:
        listed = content[style].get(key)
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict):
                label, value = _text(item.get("label")), _text(item.get("value"))
                label, value = strings.get(label, label), strings.get(value, value)
                fields.append(PassField(section, _text(item.get("key")), label, value))
    codes = content.get("barcodes") or ([content["barcode"]] if content.get("barcode") else [])
    first = codes[0] if isinstance(codes, list) and codes and isinstance(codes[0], dict) else {}
    barcode = _text(first.get("message")) if "message" in first else None
    organization = _text(content.get("organizationName"))
    return PassReading(style, organization, fields, barcode, _problems(fields, barcode))


def pkpass_url(pass_url: str, base: str) -> str:
    """`{pass_url}.pkpass`, when `pass_url` is a pass under `base` (PASSKIT_PASS_URL); else
    PassCheckError: no other address is ever fetched."""
    prefix = base.rstrip("/") + "/"
    pass_id = pass_url.removeprefix(prefix)
    if not pass_url.startswith(prefix) or not PASS_ID.fullmatch(pass_id):
        raise PassCheckError(f"Only passes under PASSKIT_PASS_URL ({prefix}…) are checked.")
    return pass_url + ".pkpass"


async def fetch_pkpass(url: str, *, timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES) -> bytes:
    """GET `url` (no redirects followed), at most `max_bytes` within `timeout` seconds."""
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": PKPASS}) as answer,
        ):
            if answer.status_code == 404:
                raise PassCheckError("PassKit has no such pass (HTTP 404): it was deleted, "
                                     "voided, or never issued.")  # fmt: skip
            if answer.status_code != 200:
                raise PassCheckError(f"PassKit answered HTTP {answer.status_code} instead "
                                     "of the pass.")  # fmt: skip
            chunks: list[bytes] = []
            read = 0
            async for chunk in answer.aiter_bytes():
                read += len(chunk)
                if read > max_bytes:
                    size = f"{max_bytes / (1024 * 1024):g} MB"
                    raise PassCheckError(f"The pass file is larger than {size}: not read.")
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise PassCheckError(f"PassKit did not send the pass within {timeout:g} s.") from None
    except httpx.HTTPError:
        raise PassCheckError("PassKit's pass address could not be reached.") from None
    return b"".join(chunks)


class PassChecker:
    """Reads passes under `base`, each kept `ttl` seconds (failures are not kept)."""

    def __init__(self, base: str, *, ttl: float = CACHE_SECONDS, timeout: float = TIMEOUT,
                 max_bytes: int = MAX_BYTES) -> None:  # fmt: skip
        self.base = base
        self.ttl = ttl
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._cache: dict[str, tuple[float, PassReading]] = {}

    async def check(self, pass_url: str) -> PassReading:
        url = pkpass_url(pass_url, self.base)
        now = time.monotonic()
        kept = self._cache.get(url)
        if kept and now - kept[0] < self.ttl:
            return kept[1]
        reading = read_pkpass(
            await fetch_pkpass(url, timeout=self.timeout, max_bytes=self.max_bytes)
        )
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[url] = (now, reading)
        return reading

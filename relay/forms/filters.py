"""Template filters that turn flat form text into the values PassKit expects. Pure functions.

Zapier and Make send every field as text typed by people or reformatted by earlier steps, so
each filter reads the common human spellings (`1,234`, `€12,50`, `yes`, `27/04/1990`,
`020 7946 0958`) and returns a plain Python value; the template's output is JSON-encoded.

Shared rules: `None` (a declared field that was not sent) and blank text give `None`, so
optional fields can be written unconditionally; a list of exactly one value is that value.
Unreadable input raises `InvalidField` naming the field (from `FieldValue.field`) with a hint
for the Zapier/Make user; a bad filter argument is the template author's bug and raises
ValueError or TypeError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from relay.errors import InvalidField, quote_value
from relay.forms import dates as humandates
from relay.forms import phones
from relay.forms.fields import FieldValue, field_name

_NUMBER_HINT = "Map a number such as 25; in Zapier you can clean it with Formatter › Numbers."
_MONEY_HINT = "Map an amount such as 12.50 (a currency sign or code is fine, words are not)."
_BOOL_HINT = "Map yes/no, true/false, y/n, 1/0, on/off or checked/unchecked."
_DATE_HINT = (
    "Map the date as YYYY-MM-DD, e.g. 1990-04-27; Zapier's Formatter › Date / Time or Make's "
    "formatDate() can convert it."
)
_DATETIME_HINT = (
    "Map a date or date-time such as 2026-12-31 or 2026-12-31T10:00:00Z; Zapier's Formatter › "
    "Date / Time or Make's formatDate() can convert it."
)
_PHONE_HINT = "Map only the number, in international format such as +442079460958."
_NO_COUNTRY_HINT = (
    "Map numbers in international format (+CC…, e.g. +442079460958), or ask the relay's "
    "operator to set the hook's country param (e.g. country=GB)."
)
_INVALID_PHONE_HINT = (
    "Map the whole number with its country code, e.g. +442079460958, and check no digit is "
    "missing or extra; numbers without +CC are read in the hook's country."
)
_EMAIL_HINT = "Map the email address itself, e.g. ana@example.com, not a name or an empty step."


def _invalid(value: object, item: object, problem: str, hint: str) -> InvalidField:
    """An InvalidField whose message reads on after the field name the renderer puts first."""
    field = field_name(value) or field_name(item)
    quoted = quote_value(item)
    return InvalidField(f"{problem} (got: {quoted}).", field=field, hint=hint, private=[quoted])


def _one(value: object) -> object:
    """The single value a scalar filter works on: stripped text, a one-item list's item, or
    None for blank input."""
    if isinstance(value, list | tuple):
        items = [v for v in value if v is not None and (not isinstance(v, str) or v.strip())]
        if len(items) > 1:
            quotes = [quote_value(v, 20) for v in items[:3]]
            raise InvalidField(
                f"expects one value but got several: {', '.join(quotes)}"
                f"{', …' if len(items) > 3 else ''}.",
                field=field_name(value) or field_name(items[0]),
                hint="Map a single value here, not a list or line items.",
                private=quotes,
            )
        value = items[0] if items else None
    if isinstance(value, str):
        return value.strip() or None
    return value


# --- Numbers ----------------------------------------------------------------------------------

# A space or apostrophe between digits groups thousands: "1 234 567,89", "1'234.50" (Swiss).
_SPACED_GROUPS = re.compile(r"(?<=\d)[\s'’](?=\d{3}(?!\d))")
_SCIENTIFIC = re.compile(r"(\d+\.?\d*|\.\d+)e[+-]?\d+", re.I)
# The longest text read as a number: "EUR 1.234.567.890,12 (incl. VAT)" fits with room to spare.
# Checked before any regex or Decimal work, whose cost can grow with the square of the length.
MAX_NUMBER_TEXT = 50
# "Thursday, 27 September 2026 at 19:30:00 Central European Summer Time (CEST)" fits.
MAX_DATE_TEXT = 100
# The largest amount of money: beyond any real order, and inside Decimal's 28 digits of cents.
MAX_MONEY = Decimal(10) ** 15


def _short_text(value: object, item: str, what: str, hint: str, limit: int) -> str:
    """`item` once it is short enough to be read as `what`; every parsing filter asks here
    before any regex work, so a hostile value costs nothing."""
    if len(item) > limit:
        problem = f"is too long to be {what} ({len(item):,} characters; at most {limit})"
        raise _invalid(value, item, problem, hint)
    return item


def _numeric_text(value: object, item: str, what: str, hint: str) -> str:
    return _short_text(value, item, what, hint, MAX_NUMBER_TEXT)


def _scientific(sign: str, body: str) -> Decimal | None:
    """`1e3`, `2.5E-2` (a body `_SCIENTIFIC` matched) as a Decimal; None past 10^±100 or past
    Decimal's own exponent limit (`10E999999999999999999`, a fuzz find, raised: a 500)."""
    try:
        number = Decimal(sign + body)
    except InvalidOperation:
        return None
    return number if abs(number.adjusted()) <= 100 else None


def _decimal(text: str, *, dot_groups: bool = False) -> Decimal | None:
    """`1,234.5`, `1.234,5`, `12,5`, `-3`, `1e3` → Decimal; None when it is not a number.

    The last of `.`/`,` is the decimal mark, except that a single mark followed by exactly three
    digits groups thousands: always for `,` (`1,234`), and for `.` when `dot_groups` (where a
    third decimal makes no sense: whole numbers and money)."""
    text = _SPACED_GROUPS.sub("", humandates.normalise_digits(text).strip())
    sign = text[:1] if text[:1] in ("+", "-") else ""
    body = text[len(sign) :].lstrip()
    if _SCIENTIFIC.fullmatch(body):
        return _scientific(sign, body)
    if not re.fullmatch(r"[\d.,]+", body) or not any(c.isdigit() for c in body):
        return None
    mark = body[max(body.rfind("."), body.rfind(","))] if "." in body or "," in body else ""
    whole, _, fraction = body.rpartition(mark) if mark else (body, "", "")
    grouping = mark in whole or (  # "1,234,567", or one mark before exactly three digits
        len(fraction) == 3 and re.fullmatch(r"[1-9]\d{0,2}", whole) and (mark == "," or dot_groups)
    )
    if mark and grouping:
        whole, fraction, group = body, "", mark
    else:
        group = "," if mark == "." else "."
    if not re.fullmatch(rf"\d*|\d{{1,3}}(\{group}\d{{3}})+", whole):
        return None
    if not re.fullmatch(r"\d*", fraction) or not (whole or fraction):
        return None
    return Decimal(f"{sign}{whole.replace(group, '') or 0}.{fraction or 0}")


# One number reading per hook (the `number_format` setting of hooks minted from v2 on): the
# decimal mark and the thousands mark, with nothing read two ways by its digit count. Unset
# (older URLs) the lenient reading above applies.
NUMBER_FORMATS = ("1,234.56", "1.234,56")
_READING: ContextVar[str | None] = ContextVar("number_format", default=None)


_LIST = re.compile(r"\d+(?:\s*[,;]\s*\d+)+")  # 10,20 or 10, 20, 30: Zapier's line items


def _one_number(
    value: object, item: object, text: str, reading: str, problem: str, hint: str
) -> Decimal:
    """`text` read in `reading` alone: `1,234.56` (a comma between thousands, a dot before
    decimals) or `1.234,56` (the other way round). A 422 naming the field, the value and what
    to send when it cannot be one number in that format."""
    group, mark = (",", ".") if reading == NUMBER_FORMATS[0] else (".", ",")
    text = _SPACED_GROUPS.sub("", humandates.normalise_digits(text).strip())
    sign = text[:1] if text[:1] in ("+", "-") else ""
    body = text[len(sign) :].strip()
    if _SCIENTIFIC.fullmatch(body) and mark == ".":
        number = _scientific(sign, body)
        if number is not None:
            return number
    if not re.fullmatch(r"[\d.,;\s]+", body) or not any(c.isdigit() for c in body):
        raise _invalid(value, item, problem, hint)  # words, not a number in any format
    whole, _, fraction = body.partition(mark)
    grouped = rf"\d{{1,3}}(?:\{group}\d{{3}})+"
    whole_ok = re.fullmatch(rf"\d+|{grouped}", whole) or (not whole and fraction)
    if whole_ok and re.fullmatch(r"\d*", fraction):
        return Decimal(f"{sign}{whole.replace(group, '') or 0}.{fraction or 0}")
    if _LIST.fullmatch(body):
        other = NUMBER_FORMATS[1] if mark == "." else NUMBER_FORMATS[0]
        raise _invalid(value, item, "looks like a list of numbers, not one number",
                       "Map one line item, or add them up with Zapier's Formatter › Numbers "
                       "(Make: sum()) and map the total. If it is one number, ask for a hook URL "
                       f"with number format {other}.")  # fmt: skip
    example = "1,234.56 or 12.50" if mark == "." else "1.234,56 or 12,50"
    raise _invalid(value, item, f"is not one number as this hook reads them ({reading})",
                   f"Send it as {example}: {'a dot' if mark == '.' else 'a comma'} before the "
                   f"decimals, {'commas' if group == ',' else 'dots'} between thousands. If "
                   "your app writes numbers the other way, ask for a hook URL with the other "
                   "number format.")  # fmt: skip


def _number(value: object, item: object, problem: str, *, dot_groups: bool) -> Decimal:
    if isinstance(item, bool):  # True is an int to Python, not a number to a form user
        raise _invalid(value, item, problem, _NUMBER_HINT)
    if isinstance(item, int | float) and math.isfinite(item):
        return Decimal(str(item))
    if isinstance(item, str) and item.isascii() and item.isdigit():
        # Plain digits (`10`), most numbers a zap sends, read the same in every format.
        return Decimal(_numeric_text(value, item, "a number", _NUMBER_HINT))
    number = None
    reading = _READING.get()
    if isinstance(item, str) and reading:
        text = _numeric_text(value, item, "a number", _NUMBER_HINT)
        return _one_number(value, item, text, reading, problem, _NUMBER_HINT)
    if isinstance(item, str):
        number = _decimal(
            _numeric_text(value, item, "a number", _NUMBER_HINT), dot_groups=dot_groups
        )
    if number is None:
        raise _invalid(value, item, problem, _NUMBER_HINT)
    return number


def _check_range(
    value: object, item: object, number: float, low: float | None, high: float | None
) -> None:
    if low is not None and number < low:
        raise _invalid(value, item, f"must be at least {low}", _NUMBER_HINT)
    if high is not None and number > high:
        raise _invalid(value, item, f"must be at most {high}", _NUMBER_HINT)


def to_int(value: object, min: int | None = None, max: int | None = None) -> int | None:
    """A whole number: `12`, `12.0`, `1,234`, `+5` → int; `12.5` is rejected, not rounded."""
    item = _one(value)
    if item is None:
        return None
    number = _number(value, item, "must be a whole number", dot_groups=True)
    if number != number.to_integral_value():
        raise _invalid(value, item, "must be a whole number, not a fraction", _NUMBER_HINT)
    result = int(number)
    _check_range(value, item, result, min, max)
    return result


def to_float(value: object, min: float | None = None, max: float | None = None) -> float | None:
    """A number: `12.5`, `12,5`, `1,234.5`, `1.234,5`, `1e3` → float (never NaN or infinite)."""
    item = _one(value)
    if item is None:
        return None
    result = float(_number(value, item, "must be a number", dot_groups=False))
    if not math.isfinite(result):
        raise _invalid(value, item, "must be a number", _NUMBER_HINT)
    _check_range(value, item, result, min, max)
    return result


# Currency codes, words and signs around an amount: "€", "GBP", "R$", "kr.", "CHF", "zł".
_AFFIX = re.compile(r"[\s+-]*(?:(?:[^\W\d_]{1,3}(?![^\W\d_])\.?|[$€£¥₹₩₽₺₪₫฿₱₦₴¢¤])[\s+-]*)*")


def money(value: object) -> float | None:
    """An amount as shops and people write it (`€12.50`, `12,50 €`, `$1,234.56`, `GBP 9.99`,
    `(5.00)`) → float rounded to cents."""
    item = _one(value)
    if item is None:
        return None
    problem = "must be an amount of money such as 12.50"
    if not isinstance(item, str):
        number = _number(value, item, problem, dot_groups=True)
    else:
        text = humandates.normalise_digits(_numeric_text(value, item, "an amount", _MONEY_HINT))
        negative = text.startswith("(") and text.endswith(")")  # accountants' negatives
        text = text[1:-1] if negative else text
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        if not digits:
            raise _invalid(value, item, problem, _MONEY_HINT)
        prefix, suffix = text[: digits[0]], text[digits[-1] + 1 :]
        suffix = re.sub(r"^[.,]-", "", suffix)  # "12,- €": whole euros
        amount = text[digits[0] : digits[-1] + 1]
        reading = _READING.get()
        parsed = (_one_number(value, item, amount, reading, problem, _MONEY_HINT) if reading
                  else _decimal(amount, dot_groups=True))  # fmt: skip
        if parsed is None or not (_AFFIX.fullmatch(prefix) and _AFFIX.fullmatch(suffix)):
            raise _invalid(value, item, problem, _MONEY_HINT)
        negative = negative or "-" in prefix + suffix
        number = -parsed if negative else parsed
    if abs(number) >= MAX_MONEY:
        raise _invalid(value, item, "is too large for an amount of money", _MONEY_HINT)
    return float(number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# --- Words, dates and times -------------------------------------------------------------------

_TRUE = frozenset({"yes", "y", "true", "t", "1", "on", "checked"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "off", "unchecked"})


def to_bool(value: object) -> bool | None:
    """yes/no, y/n, true/false, t/f, 1/0, on/off, checked/unchecked (any case) → bool."""
    item = _one(value)
    if item is None or isinstance(item, bool):
        return item
    word = humandates.normalise_digits(str(item)).casefold()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise _invalid(value, item, "must be yes or no", _BOOL_HINT)


def _order(order: str | None) -> str:
    key = (order or "DMY").strip().upper()
    if key not in humandates.ORDERS:
        raise ValueError(f"date order must be DMY or MDY, not {order!r}")
    return key


def to_date(value: object, order: str | None = None) -> dict[str, int] | None:
    """A date in almost any human format → PassKit's `{"year": …, "month": …, "day": …}`.

    `03/04/1990` is read in `order` (DMY by default, or MDY); `27/04/1990` is unambiguous."""
    key = _order(order)
    item = _one(value)
    if item is None:
        return None
    if isinstance(item, datetime):
        day = item.date()
    elif isinstance(item, date):
        day = item
    elif isinstance(item, str):
        _short_text(value, item, "a date", _DATE_HINT, MAX_DATE_TEXT)
        try:
            day = humandates.parse_date(item, key)
        except humandates.DateProblem as problem:
            raise _invalid(value, item, str(problem), _DATE_HINT) from None
    else:
        raise _invalid(value, item, "is not a date", _DATE_HINT)
    return {"year": day.year, "month": day.month, "day": day.day}


# The hook's time zone (the `timezone` setting of hooks minted from v2 on): a date-time without
# an offset is read there. Unset (older URLs), UTC.
_ZONE: ContextVar[str | None] = ContextVar("time_zone", default=None)


class Readings:
    """`with Readings(reading, zone) as notes:` reads every number in the block in the format
    `reading` (one of NUMBER_FORMATS; None: leniently) and date-times without an offset in the
    IANA zone `zone` (None: UTC), and gives the notes the readings leave (an ambiguous time read
    as the earlier). A class, not a generator's context manager: it wraps every render."""

    __slots__ = ("_reading", "_tokens", "_zone")

    def __init__(self, reading: str | None, zone: str | None) -> None:
        self._reading, self._zone = reading, zone

    def __enter__(self) -> list[str]:
        notes: list[str] = []
        self._tokens = (_READING.set(self._reading), _ZONE.set(self._zone),
                        humandates.NOTES.set(notes))  # fmt: skip
        return notes

    def __exit__(self, *exc: object) -> None:
        reading, zone, notes = self._tokens
        humandates.NOTES.reset(notes)
        _ZONE.reset(zone)
        _READING.reset(reading)


def to_datetime(
    value: object, tz: str | None = None, end_of_day: bool = False, order: str | None = None
) -> str | None:
    """A moment → RFC 3339 UTC (`2026-12-31T23:59:59Z`). Values without an offset are in `tz`
    (by default the hook's time zone, else UTC); a bare date is midnight, or 23:59:59 with
    `end_of_day`; Unix seconds/milliseconds work."""
    zone, key = humandates.zone(tz or _ZONE.get()), _order(order)
    item = _one(value)
    if item is None:
        return None
    try:
        if isinstance(item, datetime):
            moment = item if item.tzinfo else item.replace(tzinfo=zone)
        elif isinstance(item, date):
            moment = humandates.parse_datetime(item.isoformat(), zone, end_of_day=end_of_day)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            moment = humandates.from_unix(item)
        elif isinstance(item, str):
            _short_text(value, item, "a date and time", _DATETIME_HINT, MAX_DATE_TEXT)
            moment = humandates.parse_datetime(item, zone, end_of_day=end_of_day, order=key)
        else:
            raise humandates.DateProblem("is not a date and time")
    except humandates.DateProblem as problem:
        raise _invalid(value, item, str(problem), _DATETIME_HINT) from None
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


# --- Contact details --------------------------------------------------------------------------


def phone(value: object, country: str | None = None) -> str | None:
    """A phone number that exists → E.164 (`+442079460958`). National numbers (`020 7946 0958`)
    need `country`, an ISO region or calling code, usually from the hook's params."""
    phones.region(country)  # a bad country is the operator's mistake, even with no value
    item = _one(value)
    if item is None:
        return None
    try:
        return phones.to_e164(str(item), country)
    except phones.NoCountryCode as problem:
        raise _invalid(value, item, str(problem), _NO_COUNTRY_HINT) from None
    except phones.InvalidNumber as problem:
        raise _invalid(value, item, str(problem), _INVALID_PHONE_HINT) from None
    except phones.PhoneProblem as problem:
        raise _invalid(value, item, str(problem), _PHONE_HINT) from None


# An address is at most 254 characters (RFC 5321, RFC 3696 erratum 1690). Checked before the
# library sees it: email-validator spent a quarter of a second on a 1 MB string.
MAX_EMAIL_TEXT = 254
# PassKit's Go SDK checks `person.emailAddress` with go-playground/validator's `email` rule: an
# RFC 5322-style regex allowing ASCII and non-ASCII characters only from U+00A0-U+D7FF,
# U+F900-U+FDCF and U+FDF0-U+FFEF, and a top-level domain that starts and ends with a letter
# (newer versions also ask Go's net/mail to parse it, which any such dot-atom address passes).
# email-validator (syntax only) is stricter almost everywhere: it refuses quoted local parts
# (`"ana diaz"@…`), which the Go rule would take but nobody's form sends (refusing them is safe),
# `[192.0.2.1]` domains (both refuse them) and names that cannot get mail (`.test`, `localhost`,
# no dot). It does accept what the Go rule refuses: emoji and other characters outside those
# ranges (`😀@example.com`) and an IDN top-level domain ending in a digit in Unicode form. So
# this, the Go rule cut down to what can still differ, runs after it (its labels hold no dots,
# unlike the Go regex's, so nothing here backtracks far).
_GO_CHARS = "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef"
_GO_ATOM = f"[a-zA-Z0-9!#$%&'*+\\-/=?^_`{{|}}~{_GO_CHARS}]+"
_GO_LABEL = f"[a-zA-Z0-9{_GO_CHARS}](?:[a-zA-Z0-9_~{_GO_CHARS}-]*[a-zA-Z0-9{_GO_CHARS}])?"
_GO_TLD = f"[a-zA-Z{_GO_CHARS}](?:[a-zA-Z0-9_~{_GO_CHARS}-]*[a-zA-Z{_GO_CHARS}])?"


@cache
def _passkit_email() -> re.Pattern[str]:
    # Compiled on first use: its wide character ranges take ~15 ms to compile, a fortieth of
    # the relay's start-up budget, paid only by a process that reads an email address.
    return re.compile(f"{_GO_ATOM}(?:\\.{_GO_ATOM})*@(?:{_GO_LABEL}\\.)+{_GO_TLD}")


def _email_too_long(value: object, item: object, text: str) -> InvalidField:
    problem = (
        f"is too long to be an email address ({len(text):,} characters; at most {MAX_EMAIL_TEXT})"
    )
    return _invalid(value, item, problem, _EMAIL_HINT)


def email(value: object) -> str | None:
    """An email address, trimmed and taken out of `Ana Diaz <ana@example.com>` or `mailto:`,
    checked by email-validator (syntax only, never the network) and against PassKit's own rule;
    the domain is lower-cased (the local part's case can matter, so it is kept)."""
    item = _one(value)
    if item is None:
        return None
    text = str(item)
    # Room for a name, `mailto:` or `?subject=…` around the address, then the address itself.
    if len(text) > 4 * MAX_EMAIL_TEXT:
        raise _email_too_long(value, item, text)
    if bracketed := re.search(r"<([^<>]*)>", text):
        text = bracketed[1]
    text = text.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].split("?")[0].strip()  # drop ?subject=… too
    text = text.removesuffix(".")  # "ana@example.com." (a fully qualified domain)
    if len(text) > MAX_EMAIL_TEXT:
        raise _email_too_long(value, item, text)
    address, problem = checked_email(text)
    if problem:
        raise _invalid(value, item, problem, _EMAIL_HINT)
    return address


@lru_cache(maxsize=1024)  # the filter and the contract's rule read the same address in a row
def checked_email(text: str) -> tuple[str, str | None]:
    """(the normalised address, None), or (text, why PassKit would refuse it). Shared with the
    contract's `email` rule, so a template that sends an address unfiltered is held to it too."""
    if len(text) > MAX_EMAIL_TEXT:
        return text, f"is too long to be an email address (at most {MAX_EMAIL_TEXT} characters)"
    address = _plain_address(text) or _validated(text)
    if address is None:
        return text, "is not an email address"
    if not _passkit_email().fullmatch(address):
        return text, "is not an email address PassKit accepts"
    return address, None


def _validated(text: str) -> str | None:
    """email-validator's normalised address, or None when it refuses `text`."""
    import email_validator  # ~25 ms to import: loaded by the first address, not at start-up

    try:
        return email_validator.validate_email(
            text,
            check_deliverability=False,  # no DNS: syntax only, and never a network call
            allow_quoted_local=False,
            allow_domain_literal=False,
        ).normalized
    except email_validator.EmailNotValidError:
        return None


def _plain_address(text: str) -> str | None:
    """email-validator's answer for the common address, ~3 µs instead of ~22: an ASCII local
    part that its own dot-atom rule accepts as it is, at a domain it has already accepted (the
    domain's check is most of its cost, and domains repeat: gmail.com, the shop's own). None
    for anything else, which goes to the full check (tests/test_filters.py holds the two
    equal on generated addresses)."""
    local, at, domain = text.rpartition("@")
    if not at or not text.isascii() or len(local) > _LOCAL_PART_MAX:
        return None
    from email_validator import rfc_constants

    if not rfc_constants.DOT_ATOM_TEXT.match(local):
        return None
    if local.lower() in rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES:  # it lower-cases those
        return None
    normal_domain = _validated_domain(domain)
    if normal_domain is None:
        return None
    address = f"{local}@{normal_domain}"
    return address if len(address) <= rfc_constants.EMAIL_MAX_LENGTH else None


_LOCAL_PART_MAX = 64  # RFC 5321's limit: longer local parts take the full check


@lru_cache(maxsize=256)
def _validated_domain(domain: str) -> str | None:
    """The domain as email-validator normalises it when it accepts it (ASCII only), else None."""
    address = _validated(f"a@{domain}")
    normal = address.partition("@")[2] if address else None
    return normal if normal and normal.isascii() else None


# --- Lists and custom fields ------------------------------------------------------------------


def split(value: object, sep: str = ",") -> list[str] | None:
    """`"a, b,c"` → `["a", "b", "c"]` (trimmed, empty items dropped); lists are split item by
    item and flattened. Items remember their field, so filters after this still name it."""
    if not sep:
        raise ValueError("split needs a separator")
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    parts: list[str] = []
    for item in items:
        if item is not None:
            name = field_name(item) or field_name(value)
            parts += [FieldValue(p.strip(), name) for p in str(item).split(sep) if p.strip()]
    return parts


def _meta_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(text for text in map(_meta_text, value) if text)
    return "" if value is None else str(value).strip()


def meta(fields: object, prefix: str = "meta_") -> dict[str, str] | None:
    """`{{ form|meta }}`: the `meta_*` fields without the prefix, as PassKit's string map
    (`meta_favourite_store` → `favourite_store`); None when there are none.

    A nested `{"meta": {"store": …}}` arrives flattened as `meta__store` and counts too."""
    if not isinstance(fields, Mapping):
        kind = type(fields).__name__
        raise TypeError(f"meta expects the whole form ({{{{ form|meta }}}}), not a {kind}")
    starts = (prefix.rstrip("_") + "__", prefix) if prefix.endswith("_") else (prefix,)
    found: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name.startswith(starts):
            continue  # most of a form: one test each, not one per prefix
        start = next(s for s in starts if name.startswith(s))
        if len(name) > len(start) and (text := _meta_text(value)):
            found[name[len(start) :]] = text
    return found or None


FILTERS: dict[str, Callable[..., Any]] = {
    "int": to_int,
    "float": to_float,
    "money": money,
    "bool": to_bool,
    "date": to_date,
    "datetime": to_datetime,
    "phone": phone,
    "email": email,
    "split": split,
    "meta": meta,
}

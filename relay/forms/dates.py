"""Human-typed dates and times → `date` / UTC `datetime`. Pure functions, stdlib only.

Form fields come from people, spreadsheets, shops and Zapier/Make steps, so this reads what they
commonly send: ISO 8601 (`1990-04-27`, `2026-12-31T10:00:00+01:00`), `27/04/1990`, `27.04.90`,
`04/27/1990`, `27 April 1990`, `Friday, April 27, 1990`, RFC 2822 (`Fri, 27 Apr 1990 10:00:00
+0000`), JavaScript's `Fri Apr 27 1990 10:00:00 GMT+0200 (…)`, `19900427` and Unix seconds or
milliseconds. All-number dates that could be either way round (`03/04/1990`) follow the caller's
order, DMY or MDY; when one part is above 12 the date is unambiguous and the order is ignored.

A `DateProblem`'s text reads on after a field name: "is not a real date: …".
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ORDERS = ("DMY", "MDY")
CENTURY_WINDOW = 10  # a 2-digit year at most this many years ahead is this century, else the last

# fmt: off
# Spelled out rather than taken from `calendar`, whose names follow the process locale.
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")
_IGNORED = frozenset({  # weekdays are redundant; the small words come from "27th of April"
    "monday", "mon", "tuesday", "tue", "tues", "wednesday", "wed", "thursday", "thu", "thur",
    "thurs", "friday", "fri", "saturday", "sat", "sunday", "sun", "of", "the", "at", "on",
})
# fmt: on
_MONTHS = {name.lower(): n for n, name in enumerate(_MONTH_NAMES, 1)}
_MONTHS |= {name[:3].lower(): n for n, name in enumerate(_MONTH_NAMES, 1)} | {"sept": 9}
# Unicode dashes and minus as "-", fullwidth ASCII (typed with Asian input methods) as ASCII.
_ASCII = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_ASCII |= {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}

# A time of day needs a colon or am/pm, so the day and year numbers of a date are never one.
_CLOCK = re.compile(
    r"(?<![\d:])(\d{1,2})(?::(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?(?:\s*([ap])\.?m\b\.?)?", re.I
)
_OFFSET = re.compile(
    r"\s*(?:(z)\b|(?:(?:utc|gmt)\s*)?([+-])(\d{1,2}):?(\d{2})?\b|(utc|gmt)\b)", re.I
)
_UNIX = re.compile(r"(\d{9,14})(?:\.\d+)?")
_ORDINAL = re.compile(r"(?<=\d)(?:st|nd|rd|th)\b")
_ISO_T = re.compile(r"(?<=\d)t(?=\s|$)")
_SEPARATORS = re.compile(r"[\s,./-]+")


class DateProblem(ValueError):
    """The text is not a date; `str()` continues a sentence about the field."""


def normalise_digits(text: str) -> str:
    """Any script's digits as ASCII (`١٢`, `１２` → `12`), Unicode dashes and minus as `-`.

    Only decimal digits are converted: `²` has a digit value but is not a decimal one."""
    text = text.translate(_ASCII)
    if text.isascii():
        return text
    return "".join(str(d) if (d := unicodedata.decimal(c, None)) is not None else c for c in text)


def zone(name: str | None) -> tzinfo:
    """An IANA time zone; ValueError names a bad one (the template's or hook's mistake)."""
    if not name or name.strip().upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/London"
        ) from None


def parse_date(text: str, order: str = "DMY", *, today: date | None = None) -> date:
    """The calendar date written in `text`; a time of day or offset in it is ignored."""
    text = _clean(text)
    if unix := _unix(text):
        return unix.date()
    rest, _, _ = _split_clock(text)
    return _date_only(rest, order, today or date.today())


def parse_datetime(
    text: str,
    tz: tzinfo = UTC,
    *,
    end_of_day: bool = False,
    order: str = "DMY",
    today: date | None = None,
) -> datetime:
    """The moment in `text` as an aware UTC datetime; a moment without an offset is in `tz`, and
    a bare date is its midnight (23:59:59 with `end_of_day`, so an expiry date includes the day)."""
    text = _clean(text)
    if unix := _unix(text):
        return unix
    rest, clock, offset = _split_clock(text)
    day = _date_only(rest, order, today or date.today())
    if clock is None:
        clock = time(23, 59, 59) if end_of_day else time(0)
    try:
        if offset is None and tz is not UTC:
            return _local(datetime.combine(day, clock, tz)).astimezone(UTC)
        return datetime.combine(day, clock, offset or tz).astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise DateProblem("is too far in the past or future") from None


# What a reading in a zone with daylight saving said about the clock (the overlap's choice),
# for the answer to say: None when nobody is listening.
NOTES: ContextVar[list[str] | None] = ContextVar("date_notes", default=None)


def _local(moment: datetime) -> datetime:
    """A wall-clock time in its zone: refused when the clocks skip it (the spring gap), the
    earlier of the two when they pass it twice (the autumn overlap), said in NOTES."""
    there = moment.astimezone(UTC).astimezone(moment.tzinfo)
    if there.replace(tzinfo=None) != moment.replace(tzinfo=None):
        raise DateProblem(
            f"is a time that does not exist in {moment.tzinfo}: the clocks skip it when "
            "summer time starts; send the time after the change, or one with its offset"
        )
    later = moment.replace(fold=1)
    if later.utcoffset() != moment.utcoffset():
        notes = NOTES.get()
        if notes is not None:
            notes.append(
                f"{moment:%Y-%m-%d %H:%M} happens twice in {moment.tzinfo} (the clocks go back): "
                f"read as the earlier, {moment.isoformat()}; send an offset to choose the later"
            )
    return moment


def from_unix(seconds: float) -> datetime:
    """Unix seconds (or milliseconds, when too large to be seconds) as a UTC datetime."""
    if seconds >= 1e11:  # 1e11 s is the year 5138; such numbers are milliseconds
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise DateProblem("is not a date we can read") from None


def _clean(text: str) -> str:
    # Drop parenthesised notes such as JavaScript's "(Central European Summer Time)".
    return re.sub(r"\([^)]*\)", " ", normalise_digits(text)).strip()


def _unix(text: str) -> datetime | None:
    if not _UNIX.fullmatch(text):
        return None
    return from_unix(float(text))


def _split_clock(text: str) -> tuple[str, time | None, tzinfo | None]:
    """Take the time of day, and the UTC offset written right after it, out of `text`."""
    found = next((m for m in _CLOCK.finditer(text) if m[2] or m[4]), None)
    if found is None:
        return text, None, None
    hour, minute, second = int(found[1]), int(found[2] or 0), min(int(found[3] or 0), 59)
    if found[4]:
        if not 1 <= hour <= 12:
            raise DateProblem(f"has a time that doesn't exist ({found[0].strip()})")
        hour = hour % 12 + (12 if found[4].lower() == "p" else 0)
    if hour > 23 or minute > 59:
        raise DateProblem(f"has a time that doesn't exist ({found[0].strip()})")
    end, offset = found.end(), None
    if marked := _OFFSET.match(text, end):
        end, offset = marked.end(), _offset(marked)
    return text[: found.start()] + " " + text[end:], time(hour, minute, second), offset


def _offset(marked: re.Match[str]) -> tzinfo:
    if not marked[2]:
        return UTC  # Z, UTC or GMT
    hours, minutes = int(marked[3]), int(marked[4] or 0)
    if hours > 18 or minutes > 59:
        raise DateProblem(f"has a time zone offset that doesn't exist ({marked[0].strip()})")
    sign = -1 if marked[2] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _date_only(text: str, order: str, today: date) -> date:
    lowered = _ORDINAL.sub("", _ISO_T.sub(" ", text.lower()))
    tokens = [t for t in _SEPARATORS.split(lowered) if t and t not in _IGNORED]
    numbers = [t for t in tokens if t.isascii() and t.isdigit()]
    months = [_MONTHS[t] for t in tokens if t in _MONTHS]
    if len(numbers) + len(months) != len(tokens):
        raise DateProblem("is not a date we can read")
    if len(tokens) == 1 and len(numbers) == 1 and len(numbers[0]) == 8:  # 19900427
        digits = numbers[0]
        return _make(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    if len(numbers) == 3 and not months:
        return _numeric(*numbers, order=order, today=today)
    if len(numbers) == 2 and len(months) == 1:
        first, second = numbers
        # The year is the 4-digit number, or the last one: "April 27, 90", "27 Apr 90".
        day, year = (second, first) if len(first) == 4 else (first, second)
        if len(day) > 2:
            raise DateProblem("is not a date we can read")
        return _make(_year(year, today), months[0], int(day))
    raise DateProblem("is not a date we can read")


def _numeric(a: str, b: str, c: str, *, order: str, today: date) -> date:
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:  # 1990-04-27, 1990/04/27
        return _make(int(a), int(b), int(c))
    if len(a) > 2 or len(b) > 2:
        raise DateProblem("is not a date we can read")
    first, second = int(a), int(b)
    # A part above 12 can only be the day, whatever order the hook expects.
    month_first = second > 12 or (first <= 12 and order == "MDY")
    day, month = (second, first) if month_first else (first, second)
    return _make(_year(c, today), month, day)


def _year(digits: str, today: date) -> int:
    if len(digits) == 4:
        return int(digits)
    if len(digits) != 2:
        raise DateProblem(f"has a year that is not 4 digits ({digits})")
    # The latest of 19yy/20yy/21yy that is not too far in the future: 90 → 1990, 05 → 2005.
    base = today.year // 100 * 100 + int(digits)
    return max(y for y in (base - 100, base, base + 100) if y <= today.year + CENTURY_WINDOW)


def _make(year: int, month: int, day: int) -> date:
    if not 1 <= year <= 9999:
        raise DateProblem(f"is not a real date: there is no year {year}")
    if not 1 <= month <= 12:
        raise DateProblem(f"is not a real date: there is no month {month}")
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        name = _MONTH_NAMES[month - 1]
        raise DateProblem(f"is not a real date: {name} {year} has {days} days, not {day}")
    return date(year, month, day)


_UTC_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def local_moment(text: str, name: str | None) -> datetime | None:
    """An RFC 3339 UTC moment as PassKit is sent it (`2026-03-02T00:30:00Z`), on the clocks of
    the IANA zone `name`; None when `text` is no such moment or `name` no zone."""
    if not isinstance(text, str) or not _UTC_MOMENT.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(zone(name))
    except ValueError:
        return None


def local_words(text: str, name: str | None) -> str:
    """`2026-03-02T00:30:00Z` in America/New_York as a person reads it: "1 March 2026, 19:30
    New York time"; `text` itself when it is no UTC moment."""
    moment = local_moment(text, name)
    if moment is None or not name:
        return text
    place = str(zone(name)).rsplit("/", 1)[-1].replace("_", " ")
    return f"{moment.day} {moment:%B %Y, %H:%M} {place} time"

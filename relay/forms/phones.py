"""Phone numbers as people type them → E.164 (`+442079460958`), read and checked by
`phonenumbers` (Google's libphonenumber metadata: every region's dialling rules and ranges).

PassKit wants `+{countryCode}{number}` with no spaces or delimiters. People send `+44 20 7946
0958`, `+44 (0)20 7946 0958`, `0044 …`, `tel:+1-415-555-2671`, or national numbers such as
`020 7946 0958` and `(415) 555-2671`, which need the hook's country: the library knows each
region's trunk prefix (the leading 0 in most of Europe, 8 in Russia, 06 in Hungary) and
international prefix (00, 011 in North America, 0011 in Australia). A number that parses but is
not one the region allocates (`is_valid_number`: wrong length, no such range) is refused.

A `PhoneProblem`'s text reads on after a field name: "has no country code".
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, ValidationResult

from relay.forms.dates import normalise_digits

# The longest text read as a phone number: "+44 (0)20 7946 0958" is 19 characters, 15 digits
# spaced out in threes with brackets and a scheme still fit. Checked before any other work.
MAX_PHONE_TEXT = 40
# What people put around the digits; anything else (letters, "ext", "#", "*") is refused
# rather than guessed at: the library would read "ext 5" as an extension and drop it.
_PUNCTUATION = re.compile(r"\(?\+?[\d\s().\-/]*")
_SCHEME = re.compile(r"^(?:tel|callto|sms):\s*", re.I)
_ALIASES = {"UK": "GB"}  # not an ISO 3166 code, but what people write


class PhoneProblem(ValueError):
    """The text is not a phone number; `str()` continues a sentence about the field."""


class NoCountryCode(PhoneProblem):
    """A national number and no country to read it in."""


class InvalidNumber(PhoneProblem):
    """A phone number, but not one its country allocates (a digit missing, extra or wrong)."""


def region(country: str | None) -> str | None:
    """The ISO region national numbers are read in: an ISO code (`GB`, any case, one of
    `phonenumbers.SUPPORTED_REGIONS`) or a calling code (`44`, `+44`, `0044`, read as its main
    region); None for no country. ValueError for an unknown one: the hook's or template's
    mistake, not the sender's."""
    key = (country or "").strip().upper()
    if not key:
        return None
    key = _ALIASES.get(key, key)
    if key in phonenumbers.SUPPORTED_REGIONS:
        return key
    code = key.removeprefix("+").removeprefix("00")
    if code.isascii() and code.isdigit() and len(code) <= 3:
        main = phonenumbers.region_code_for_country_code(int(code))
        if main in phonenumbers.SUPPORTED_REGIONS:
            return main
    raise ValueError(f"phone: unknown country {country!r}; use an ISO code like GB or 44")


def _parse(text: str, where: str | None) -> PhoneNumber | NumberParseException:
    try:
        return phonenumbers.parse(text, where)
    except NumberParseException as problem:
        return problem


def to_e164(text: str, country: str | None = None) -> str:
    """`text` as `+{countryCode}{number}`; national numbers are read in `country`."""
    where = region(country)
    text = text.strip()
    if len(text) > MAX_PHONE_TEXT:
        raise PhoneProblem(
            f"is too long to be a phone number ({len(text):,} characters; at most {MAX_PHONE_TEXT})"
        )
    text = _SCHEME.sub("", normalise_digits(text))
    if not _PUNCTUATION.fullmatch(text) or not any(c.isdigit() for c in text):
        raise PhoneProblem("is not a phone number")
    digits = re.sub(r"\D", "", text)
    readings: list[str] = []  # how the text can be read, the likeliest first
    if "+" in text:
        readings.append(text)
    else:
        if where:
            readings.append(text)  # the region's own international prefix is understood too
        if digits.startswith("00"):
            readings.append("+" + digits[2:])  # 00 dials abroad from most of the world
        if not readings:
            raise NoCountryCode("has no country code")
    parsed = [_parse(reading, where) for reading in readings]
    for number in parsed:
        if isinstance(number, PhoneNumber) and phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise _why_refused(parsed[0], national=None if "+" in text else where)


def _why_refused(number: PhoneNumber | NumberParseException, national: str | None) -> PhoneProblem:
    """Why the likeliest reading is refused, in words that read on after a field name."""
    if isinstance(number, NumberParseException):
        why = {
            NumberParseException.INVALID_COUNTRY_CODE: "has an unknown country code",
            NumberParseException.TOO_SHORT_AFTER_IDD: "is too short to be a phone number",
            NumberParseException.TOO_SHORT_NSN: "is too short to be a phone number",
            NumberParseException.TOO_LONG: "is too long to be a phone number",
        }.get(number.error_type)
        return InvalidNumber(why) if why else PhoneProblem("is not a phone number")
    code = number.country_code or 0
    kind = f"+{code}"
    if national and phonenumbers.country_code_for_region(national) == code:
        kind = national  # read as a national number of the hook's country: "a GB phone number"
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        return InvalidNumber(f"has an unknown country code ({kind})")
    if reason == ValidationResult.TOO_SHORT:
        return InvalidNumber(f"is too short for a {kind} phone number")
    if reason == ValidationResult.TOO_LONG:
        return InvalidNumber(f"is too long for a {kind} phone number")
    return InvalidNumber(f"is not a valid {kind} phone number")

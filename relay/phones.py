"""Phone numbers as people type them → E.164 (`+447700900123`). Pure functions, stdlib only.

PassKit wants `+{countryCode}{number}` with no spaces or delimiters. People send `+44 7700
900123`, `+44 (0)7700 900123`, `0044 …`, `tel:+1-415-555-2671`, or national numbers such as
`07700 900123` and `(415) 555-2671`, which need the hook's country: its calling code goes in
front and its national trunk prefix (the leading 0 in most of Europe) comes off.

A `PhoneProblem`'s text reads on after a field name: "has no country code".
"""

from __future__ import annotations

import re

from relay.humandates import normalise_digits

# fmt: off
# ISO 3166 code → "calling-code trunk-prefix…": the prefix dialled before national numbers and
# dropped after +CC (none where numbers are always dialled in full, e.g. Italy, Spain).
_DIALLING = {
    "AT": "43 0", "BE": "32 0", "BG": "359 0", "CY": "357", "CZ": "420", "DE": "49 0",
    "DK": "45", "EE": "372", "ES": "34", "FI": "358 0", "FR": "33 0", "GR": "30", "HR": "385 0",
    "HU": "36 06", "IE": "353 0", "IT": "39", "LT": "370 8 0", "LU": "352", "LV": "371",
    "MT": "356", "NL": "31 0", "PL": "48", "PT": "351", "RO": "40 0", "SE": "46 0", "SI": "386 0",
    "SK": "421 0", "GB": "44 0", "UK": "44 0", "IS": "354", "NO": "47", "CH": "41 0",
    "LI": "423", "MC": "377", "UA": "380 0", "RS": "381 0", "RU": "7 8", "TR": "90 0",
    "IL": "972 0", "AE": "971 0", "SA": "966 0", "QA": "974", "KW": "965", "EG": "20 0",
    "MA": "212 0", "ZA": "27 0", "NG": "234 0", "KE": "254 0", "US": "1 1", "CA": "1 1",
    "PR": "1 1", "MX": "52", "BR": "55 0", "AR": "54 0", "CL": "56", "CO": "57", "PE": "51 0",
    "AU": "61 0", "NZ": "64 0", "JP": "81 0", "CN": "86 0", "HK": "852", "TW": "886 0",
    "KR": "82 0", "SG": "65", "MY": "60 0", "TH": "66 0", "PH": "63 0", "ID": "62 0",
    "VN": "84 0", "IN": "91 0", "PK": "92 0",
}
# fmt: on
Plan = tuple[str, tuple[str, ...]]  # calling code, trunk prefixes
_PLANS: dict[str, Plan] = {
    iso: (s.split()[0], tuple(s.split()[1:])) for iso, s in _DIALLING.items()
}
_TRUNKS = {code: trunks for code, trunks in _PLANS.values()}
_EXIT_CODES = {"1": "011", "61": "0011"}  # dialled before a foreign number; "00" elsewhere
_PUNCTUATION = re.compile(r"\(?\+?[\d\s().\-/]*")


class PhoneProblem(ValueError):
    """The text is not a phone number; `str()` continues a sentence about the field."""


class NoCountryCode(PhoneProblem):
    """A national number and no country to read it in."""


def dialling_plan(country: str | None) -> Plan | None:
    """The plan for an ISO code (`GB`, any case) or a calling code (`44`, `+44`); None for no
    country. ValueError for an unknown one: that is the hook's or template's mistake."""
    key = (country or "").strip().upper()
    if not key:
        return None
    if key in _PLANS:
        return _PLANS[key]
    code = key.removeprefix("+").removeprefix("00")
    if code.isascii() and code.isdigit() and 1 <= len(code) <= 3:
        return code, _TRUNKS.get(code, ())
    raise ValueError(f"phone: unknown country {country!r}; use an ISO code like GB or 44")


def to_e164(text: str, country: str | None = None) -> str:
    """`text` as `+{countryCode}{number}`; national numbers are read in `country`."""
    plan = dialling_plan(country)
    text = normalise_digits(text).strip()
    text = re.sub(r"^(?:tel|callto|sms):\s*", "", text, flags=re.I)
    text = re.sub(r"\(\s*0\s*\)", "", text)  # "+44 (0)7700 …": the trunk 0 is not dialled
    if not _PUNCTUATION.fullmatch(text):
        raise PhoneProblem("is not a phone number")
    digits = re.sub(r"\D", "", text)
    code, trunks = plan or ("", ())
    exit_code = next((e for e in (_EXIT_CODES.get(code), "00") if e and digits.startswith(e)), "")
    if "+" in text:
        number = digits
    elif exit_code:
        number = digits[len(exit_code) :]
    elif plan is None:
        raise NoCountryCode("has no country code")
    elif "0" in trunks and digits.startswith(code) and len(digits) >= len(code) + 9:
        number = digits  # an international number that lost its + (spreadsheets do that)
    else:
        trunk = next((t for t in trunks if digits.startswith(t)), "")
        if code == "1" and len(digits) != 11:
            trunk = ""  # in North America the trunk 1 only leads an 11-digit number
        number = code + digits[len(trunk) :]
    # "+44 07700 900123": a trunk 0 written after the calling code.
    cc = next((number[:n] for n in (1, 2, 3) if number[:n] in _TRUNKS), "")
    if cc and "0" in _TRUNKS[cc] and number[len(cc) : len(cc) + 1] == "0":
        number = cc + number[len(cc) + 1 :]
    if not 8 <= len(number) <= 15 or number.startswith("0"):
        raise PhoneProblem("needs 8 to 15 digits including the country code")
    return "+" + number

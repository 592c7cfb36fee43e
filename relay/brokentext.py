"""Broken text: lone UTF-16 surrogates, which no encoder can write, and NUL characters, which
PostgreSQL's text columns cannot hold.

Decoding bytes never makes a surrogate, but a JSON escape can (`"\\ud800"`: half of an emoji cut
by an earlier step); a NUL arrives as `%00` or `\\u0000`. Such text fails wherever it is written:
the PassKit call, the answer, the database, the log. Senders' fields holding it are refused
(`payloads`, `stripe_events`); text from elsewhere (PassKit's answers, what the log stores) is
mended with U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

BROKEN = re.compile("[\x00\ud800-\udfff]")
# In raw JSON bytes: only where this escape appears can the decoded value hold a surrogate (or,
# for \u0000, a NUL).
BROKEN_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


def is_broken(text: str) -> bool:
    return BROKEN.search(text) is not None


def mend_text(text: str) -> str:
    return BROKEN.sub("\ufffd", text)


def mend(value: Any) -> Any:
    """A JSON value with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return mend_text(value)
    if isinstance(value, Mapping):
        return {mend(key): mend(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mend(item) for item in value]
    return value


def holds_broken(value: Any) -> bool:
    """True when any string in the JSON value, key or text, holds a lone surrogate."""
    stack = [value]
    while stack:  # no recursion: the value may come from a hostile body
        item = stack.pop()
        if isinstance(item, str):
            if is_broken(item):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False

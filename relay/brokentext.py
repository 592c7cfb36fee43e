"""Lone UTF-16 surrogates: text no encoder can write.

Decoding bytes never makes one, but a JSON escape can (`"\\ud800"`: half of an emoji cut by an
earlier step). Such text fails wherever it is written: the PassKit call, the answer, the
database, the log. Senders' fields holding it are refused (`payloads`, `stripe_events`); text
from elsewhere (PassKit's answers, what the log stores) is mended with U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")
# In raw JSON bytes: only where this escape appears can the decoded value hold a surrogate.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def is_broken(text: str) -> bool:
    return SURROGATE.search(text) is not None


def mend_text(text: str) -> str:
    return SURROGATE.sub("\ufffd", text)


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

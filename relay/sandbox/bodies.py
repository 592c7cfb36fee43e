"""The sandbox's control endpoints read small JSON objects: one reader for all of them."""

from __future__ import annotations

import json
from typing import Any


def json_object(body: bytes) -> dict[str, Any] | None:
    """`body` as a JSON object (an empty body is `{}`); None when it is not one, so the endpoint
    answers 400 in its own words instead of a 500."""
    try:
        given = json.loads(body or b"{}")
    except ValueError:
        return None
    return given if isinstance(given, dict) else None

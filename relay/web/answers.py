"""A delivery's JSON answer, written by relay.jsontext (orjson) instead of Starlette's
`json.dumps`: the same compact UTF-8 text, ~10 µs less a delivery (issue 24)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from relay.jsontext import compact


class JSONAnswer(JSONResponse):
    def render(self, content: Any) -> bytes:
        return compact(content)

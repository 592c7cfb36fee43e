"""The demo's stand-in for a Zapier "Catch Hook": `/demo/catch` keeps what the relay forwards
from PassKit's events (in memory, newest first) and shows it, so the loop "issue a pass →
PassKit says it was installed → the zap hears of it" can be watched with no Zapier account.

    POST /demo/catch   what a zap's Catch Hook would receive (JSON)
    GET  /demo/catch   the events caught, as a page (JSON with ?format=json)
"""

from __future__ import annotations

import json
import time
from collections import deque
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

PATH = "/demo/catch"
KEEP = 200  # the newest events kept; the demo is for looking, not for storing
SHOWN = ("pass_id", "external_id", "first_name", "last_name", "email", "tier")


class CatchBox:
    def __init__(self) -> None:
        self.caught: deque[dict[str, Any]] = deque(maxlen=KEEP)

    async def catch(self, request: Request) -> Response:
        try:
            event = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "send JSON"}, status_code=400)
        if not isinstance(event, dict):
            return JSONResponse({"ok": False, "error": "send a JSON object"}, status_code=400)
        self.caught.appendleft({"caught_at": time.time(), **event})
        return JSONResponse({"ok": True})

    async def show(self, request: Request) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse(list(self.caught))
        return HTMLResponse(page(list(self.caught)))

    def routes(self) -> list[Route]:
        return [Route(PATH, self.catch, methods=["POST"]), Route(PATH, self.show, methods=["GET"])]


def page(caught: list[dict[str, Any]]) -> str:
    rows = "".join(
        "<li><b>{}</b> at {} UTC<br>{}</li>".format(
            escape(str(event.get("event", "?"))),
            time.strftime("%H:%M:%S", time.gmtime(event["caught_at"])),
            " · ".join(f"{k} <code>{escape(str(event[k]))}</code>" for k in SHOWN if k in event),
        )
        for event in caught
    )
    body = (
        f"<ol>{rows}</ol>"
        if caught
        else "<p>Nothing yet. Issue a pass with the demo's hook, or press “Add to a wallet” on a "
        "pass card in the sandbox.</p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Not a bare meta refresh (a reload under the reader's eyes: axe calls it critical):
        # a script reloads only when something new was caught; without scripts, every 5 s.
        '<noscript><meta http-equiv="refresh" content="5"></noscript>'
        "<title>What your zap would receive</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
        "padding:0 1rem;color:#1d2430}li{margin:.6rem 0}code{overflow-wrap:anywhere}</style>"
        "</head><body><main><h1>What your zap would receive</h1><p>PassKit's events, as the relay "
        "forwards them to a Zapier Catch Hook or a Make webhook (this page refreshes itself)."
        f"</p>{body}<script>const newest = {caught[0]['caught_at'] if caught else 0};"
        " setInterval(() => fetch('?format=json').then(r => r.json()).then(all => "
        "{ if ((all[0] || {caught_at: 0}).caught_at !== newest) location.reload(); }), 3000);"
        "</script></main></body></html>"
    )

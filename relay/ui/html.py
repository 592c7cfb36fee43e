"""Server-rendered HTML for the admin console and the public hook pages.

A separate Jinja environment from the request templates': this one writes HTML, so every value
is autoescaped. One stylesheet, inlined into each page (pages stay one request, and the
console works with no static file route or JavaScript, except the copy buttons).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse

from relay.brokentext import mend_text

FOLDER = Path(__file__).parent / "templates"
STYLESHEET = (FOLDER / "admin.css").read_text(encoding="utf-8")


def when(at: float | None) -> str:
    """The console's one date format: 2026-12-07 14:30:05 UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else "never"


_when = when


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


ENV = Environment(
    loader=FileSystemLoader(FOLDER),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["pretty"] = _pretty
ENV.globals["stylesheet"] = STYLESHEET
# The tab icon, inline so no page asks for /favicon.ico (the app answers that too, see relay.app).
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#0f1b2d"/>'
    '<path d="M9 17l5 5 9-11" stroke="#f59e0b" stroke-width="4" fill="none" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)
ENV.globals["favicon"] = "data:image/svg+xml," + quote(FAVICON_SVG)


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = ENV.get_template(name).render(**context)
    # No caching of pages that may show deliveries; no framing (clickjacking on forms).
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
               "Referrer-Policy": "same-origin"}  # fmt: skip
    return HTMLResponse(html, status_code=status, headers=headers)


def form_text(form: FormData, name: str) -> str:
    """One text field of a posted form, mended (see form_texts); "" when it is missing."""
    value = form.get(name)
    return mend_text(value) if isinstance(value, str) else ""


def form_texts(form: FormData) -> dict[str, str]:
    """The form's text fields, mended: a NUL typed or pasted in cannot reach the database."""
    return {mend_text(k): mend_text(v) for k, v in form.items() if isinstance(v, str)}

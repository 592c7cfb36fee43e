"""`GET /hooks/{token}`: what a hook does and takes, as JSON or as the builder's web page.

The token is the key, so the page is public to whoever holds the URL: it shows the fields
(required or optional, help, example), the Zapier and Make steps, a curl line and a test form
that does a dry run. It never shows a secret: hook params are readable by design.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from relay.admin.html import page
from relay.fields import Fields
from relay.templating import RequestTemplate
from relay.tokens import Hook


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def describe(hook: Hook, template: RequestTemplate) -> dict[str, Any]:
    fields = [
        {"name": f.name, "required": f.required, "type": f.type, "help": f.help,
         "example": f.example}
        for f in template.fields.values()
    ]  # fmt: skip
    return {
        "ok": True,
        "hook_id": hook.id,
        "template": template.name,
        "operation": template.operation.name,
        "summary": template.summary,
        "params": dict(hook.params),
        "fields": fields,
        "one_of": list(template.one_of),
    }


def hook_page(
    request: Request,
    hook: Hook,
    template: RequestTemplate,
    *,
    tried: dict[str, Any] | None = None,
    sent: Fields | None = None,
) -> HTMLResponse:
    url = str(request.url.replace(query="", fragment="")).removesuffix("/try")
    return page("hook_page.html", hook=hook, template=template, url=url, tried=tried,
                sent=sent or {})  # fmt: skip

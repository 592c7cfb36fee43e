"""`GET /hooks/{token}`: what a hook does and takes, as JSON or as the builder's web page.

The token is the key, so the page is public to whoever holds the URL: it shows the fields
(required or optional, help, example), the Zapier and Make steps, a curl line and a test form
that does a dry run. It never shows a secret: hook params are readable by design.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from relay.access.tokens import Hook
from relay.delivery.templating import RequestTemplate
from relay.forms.fields import Fields
from relay.hooks.minting import settings_of
from relay.passkit.account import Account
from relay.ui.fixes import label
from relay.ui.html import page

# Who the test form is about, by the template's group ("fill in a member as your zap would…").
SUBJECTS = {"Members": "a member", "Coupons": "a coupon", "Tickets": "a ticket"}


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
    account: Account | None = None,
) -> HTMLResponse:
    """The builder's page; `account`: the PassKit account as last read, to name ids with."""
    url = str(request.url.replace(query="", fragment="")).removesuffix("/try")
    settings = settings_of(template.params, hook.params, account)
    return page("hook_page.html", hook=hook, template=template, url=url, tried=tried,
                sent=sent or {}, result=form_result(tried, template) if tried else None,
                subject=SUBJECTS.get(template.group, "one"), settings=settings,
                label=label)  # fmt: skip


def form_result(tried: dict[str, Any], template: RequestTemplate) -> dict[str, Any]:
    """The test form's answer told to the person at the form: what is wrong in words, which
    boxes to fix; the answer's code and its hint for the zap go under technical details."""
    if tried.get("ok"):
        return {"ok": True}
    error = tried.get("error") or {}
    code, field = str(error.get("code", "")), error.get("field")
    message = str(error.get("message", ""))
    problems = [p for p in tried.get("problems") or [] if isinstance(p, dict) and p.get("field")]
    boxes: list[str] = []
    if problems:  # every problem at once: each box to fix, in the form's order
        missing = [str(p["field"]) for p in problems if "is required" in str(p["message"])]
        bad = [p for p in problems if "is required" not in str(p["message"])]
        said = []
        if missing:
            names = [" or ".join(label(n) for n in m.split(" or ")) for m in missing]
            said.append(f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} needed.")
        for p in bad:
            name = str(p["field"])
            said.append(f"{label(name)} {str(p['message']).removeprefix(name).lstrip(' :')}")
        boxes = [n for m in missing for n in m.split(" or ")] + [str(p["field"]) for p in bad]
        words = " ".join(said)
        fix = "Correct " + ("them" if len(problems) > 1 else "it") + " above and try again."
        if missing and not bad:
            fix = f"Fill in {' and '.join(names)} above and try again."
    elif code == "missing_field":
        missing = error.get("fields") or [field]
        boxes = [n for each in missing for n in str(each).split(" or ")]
        names = [" or ".join(label(n) for n in str(each).split(" or ")) for each in missing]
        needed = " and ".join(names)
        verb = "is" if len(names) == 1 else "are"
        words, fix = f"{needed} {verb} needed.", f"Fill in {needed} above and try again."
    elif code == "invalid_field" and field:
        boxes = [str(field)]
        said_one = message.removeprefix(str(field)).lstrip(" :")
        words, fix = f"{label(str(field))} {said_one}", "Correct it above and try again."
    else:
        words, fix = message, ""
    # A field's hint tells a zap builder which Data row to add: at the form, the fix is the box.
    hint = "" if boxes else str(error.get("hint", ""))
    return {"ok": False, "words": words, "fix": fix, "boxes": boxes, "code": code,
            "message": message, "hint": hint}  # fmt: skip

"""The console's pages for fixing failures: failures grouped by cause (hook + error + field)
with the fix in words, one group's deliveries, and Edit and resend (a failed hook delivery's
logged fields in a form, sent again through the same pipeline as a live delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.admin.replay import CannotReplay, replay
from relay.admin.session import Session
from relay.brokentext import mend_text
from relay.redact import MASK
from relay.store import DAY, DeliveryRecord, FailureGroup, HookRecord
from relay.ui.fixes import Failure, failure_of, label
from relay.ui.html import ENV

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

WINDOW = 7 * DAY  # how far back the failures page groups
GROUPS = 50
# delivery_actions.html asks for a delivery's failure itself, whichever page includes it.
ENV.globals["failure_of"] = failure_of


@dataclass(frozen=True)
class Row:
    """One group of failures as the page shows it."""

    group: FailureGroup
    failure: Failure
    hook: str  # the hook's label in words
    link: str  # the deliveries in this group


@dataclass(frozen=True)
class EditField:
    name: str
    label: str
    value: str
    help: str
    failing: bool
    hidden: bool  # logged as "[redacted]": it must be typed again
    sent: bool = True  # False: the template takes it, the zap did not send it


class FailurePages:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console

    def _hook_words(self, hooks: dict[str, HookRecord], hook_id: str | None) -> str:
        hook = hooks.get(hook_id or "")
        if hook is None:
            return "an unknown hook"
        return hook.label or self._template_words(hook.template)

    def _template_words(self, name: str) -> str:
        template = self.console.s.library.get(name)
        return template.summary if template else name

    def _group_link(self, record: DeliveryRecord) -> str:
        query = {"hook": record.hook_id or "", "error": record.error_code or "",
                 "field": record.error_field or ""}  # fmt: skip
        return f"{self.console.root}/failures/group?{urlencode(query)}"

    async def failures(self, request: Request, session: Session) -> Response:
        store = await self.console.store()
        groups = await store.failure_groups(self.console.s.timestamp() - WINDOW, limit=GROUPS)
        hooks = {h.id: h for h in await store.list_hooks()}
        rows = [
            Row(g, failure, self._hook_words(hooks, g.newest.hook_id), self._group_link(g.newest))
            for g in groups
            if (failure := failure_of(g.newest)) is not None
        ]
        return self.console.render("failures.html", session, "failures", title="Failures",
                                   rows=rows, days=int(WINDOW // DAY))  # fmt: skip

    async def group(self, request: Request, session: Session) -> Response:
        q = request.query_params
        store = await self.console.store()
        records = await store.list_deliveries(
            hook_id=q.get("hook") or None, outcome="failed", error_code=q.get("error") or None,
            error_field=q.get("field", ""), limit=GROUPS,
        )  # fmt: skip
        hooks = {h.id: h for h in await store.list_hooks()}
        newest = records[0] if records else None
        return self.console.render(
            "failure_group.html", session, "failures", title="Failures with one cause",
            records=records, failure=failure_of(newest) if newest else None,
            hook=self._hook_words(hooks, q.get("hook")), limit=GROUPS,
        )  # fmt: skip

    def replay_refused(self, record: DeliveryRecord, session: Session) -> Response | None:
        """The page refusing a Replay that cannot change the outcome; None when it can."""
        failure = failure_of(record)
        if failure is not None and failure.can_replay:
            return None
        why = failure.why_not if failure else "Only a failed delivery is replayed."
        return self.console.render(
            "message.html", session, "deliveries", title="Not replayed", status=409,
            heading="Not replayed", message=why, link=f"{self.console.root}/deliveries/{record.id}",
        )  # fmt: skip

    async def edit(self, request: Request, session: Session) -> Response:
        """GET: the failed delivery's fields in a form, the failing one first; POST: send them
        through the same pipeline (a replay with these fields) and show the new delivery."""
        console = self.console
        record = await (await console.store()).get_delivery(request.path_params["id"])
        if record is None:
            return RedirectResponse(f"{console.root}/deliveries", 303)
        failure = failure_of(record)
        why = failure.why_no_edit if failure else "Only a failed delivery can be edited and resent."
        problem, status = "", 200
        fields = self.fields(record, failure)
        if request.method == "POST" and failure and failure.can_edit:
            form = await request.form()
            sent = {mend_text(k[6:]): mend_text(v) for k, v in form.items()
                    if k.startswith("field:") and isinstance(v, str)}  # fmt: skip
            edited = {k: v.strip() for k, v in sent.items() if v.strip()}
            fields = [_refilled(f, sent) for f in fields]
            try:
                if not edited:
                    raise CannotReplay("Fill in at least one field.")
                new_id = await replay(console.endpoints, record, edited)
            except CannotReplay as exc:
                problem, status = str(exc), 422
            else:
                return RedirectResponse(f"{console.root}/deliveries/{new_id}", 303)
        return console.render("delivery_edit.html", session, "failures", title="Edit and resend",
                              d=record, failure=failure, why=why, fields=fields,
                              problem=problem, status=status,
                              what=self._template_words(record.template))  # fmt: skip

    def fields(self, record: DeliveryRecord, failure: Failure | None) -> list[EditField]:
        """The logged fields and the template's other fields; the failing ones first."""
        logged = record.request if isinstance(record.request, dict) else {}
        template = self.console.s.library.get(record.template)
        declared = {n: f for n, f in (template.fields if template else {}).items() if "*" not in n}
        failing = set(_failing_names(record, failure))
        names = [*logged, *(n for n in declared if n not in logged)]
        found = {n.casefold() for n in names}
        names += [n for n in failing if n.casefold() not in found]
        rows = []
        for name in names:
            value = _text(logged.get(name))
            spec = declared.get(name)
            rows.append(EditField(
                name=name, label=label(name), value="" if MASK in value else value,
                help=spec.help if spec else "", failing=name in failing, hidden=MASK in value,
                sent=name in logged,
            ))  # fmt: skip
        return sorted(rows, key=lambda f: not f.failing)


def _failing_names(record: DeliveryRecord, failure: Failure | None) -> list[str]:
    if failure is None or not failure.field:
        return []
    if record.error_code == "missing_field":  # every missing field, not only the first
        message = record.error_message or ""
        names = message.split(" is required")[0].split(" are required")[0]
        if " or " not in names and len(names) < 200:
            return [n.strip() for n in names.split(",") if n.strip()]
    return [failure.field]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _refilled(field: EditField, sent: dict[str, str]) -> EditField:
    """The field as the operator typed it, for showing the form again."""
    return EditField(field.name, field.label, sent.get(field.name, field.value), field.help,
                     field.failing, field.hidden and not sent.get(field.name),
                     field.sent)  # fmt: skip


def who(record: DeliveryRecord) -> str:
    """Whom a delivery was about, from its logged fields: name, email or external ID."""
    fields = record.request if isinstance(record.request, dict) else {}
    name = " ".join(_text(fields.get(k)) for k in ("first_name", "last_name")).strip()
    for text in (name, _text(fields.get("email")), _text(fields.get("external_id"))):
        if text and MASK not in text:
            return text if len(text) <= 60 else text[:59] + "…"
    return ""


ENV.globals["failure_who"] = who

"""The console's pages for fixing failures, a to-do list: open failures grouped by cause (error +
field, whichever hook) with the fix in words and the hooks and people inside, one group's
deliveries, Replay all (only where a replay cannot count twice), Dismiss, and Edit and resend (a
failed hook delivery's logged fields in a form, sent again through the same pipeline as a live
delivery). A failure leaves the list once a success fixes it (relay.store: `resolved_by`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.replay import CannotReplay, replay
from relay.admin.session import Session
from relay.brokentext import mend_text
from relay.passkit.account import Account, Named, Project
from relay.redact import MASK
from relay.store import DAY, DeliveryRecord, FailureGroup, HookRecord
from relay.ui.fixes import Choices, Failure, failure_of, label, missing_kind
from relay.ui.html import ENV

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

WINDOW = 7 * DAY  # how far back the failures page groups
GROUPS = 50
INSIDE = 20  # the open failures read per group, for its hooks and people
# Causes where nothing reached PassKit (the relay held it back: PassKit was busy, the relay's
# credentials or set-up were wrong), so replaying a whole group cannot do anything twice.
NOTHING_SENT = frozenset({"passkit_busy", "rate_limited", "passkit_auth", "template_error",
                          "not_configured"})  # fmt: skip
# delivery_actions.html asks for a delivery's failure itself, whichever page includes it.
ENV.globals["failure_of"] = failure_of


@dataclass(frozen=True)
class Row:
    """One group of open failures (one cause) as the page shows it."""

    group: FailureGroup
    failure: Failure
    hooks: list[str]  # the hooks' labels in words, each once
    people: list[str]  # who the failures were about, each once ("" when the log kept nobody)
    link: str  # the group's page; the delivery's own when the group has one
    replay_all: bool  # every one can be replayed, and none can count twice


def replay_all_safe(records: list[DeliveryRecord]) -> bool:
    """Replay all is offered only where a replay cannot count twice: nothing reached PassKit."""
    return bool(records) and all(
        r.error_code in NOTHING_SENT and (f := failure_of(r)) is not None and f.can_replay
        for r in records
    )


def choices_for(
    record: DeliveryRecord, hook: HookRecord | None, account: Account | None
) -> Choices | None:
    """What the account has where PassKit found no record of an id the delivery used (the
    program's tiers, the campaign's offers…), from the account as last read; None when that
    is not known."""
    kind = missing_kind(record)
    if account is None or kind is None:
        return None
    params = hook.params if hook else {}
    sent = record.passkit_request.get("json") if isinstance(record.passkit_request, dict) else None
    sent = sent if isinstance(sent, dict) else {}

    def under(projects: list[Any], param: str, key: str) -> Choices | None:
        wanted = params.get(param) or sent.get(key)
        project = next((p for p in projects if p.id == wanted), None)
        return Choices(project.name, _names(project.children)) if project else None

    if kind == "tier":
        return under(account.programs, "program_id", "programId")
    if kind == "offer":
        return under(account.campaigns, "campaign_id", "campaignId")
    if kind == "ticket type":
        return under(account.productions, "production_id", "productionId")
    listed: dict[str, list[Any]] = {"program": account.programs, "campaign": account.campaigns,
                                    "production": account.productions}  # fmt: skip
    projects = listed.get(kind)
    return Choices("Your PassKit account", _names(projects)) if projects is not None else None


def _names(items: tuple[Named, ...] | list[Project]) -> tuple[str, ...]:
    """Names first; the id beside a name only where the two differ (the zap sends the id)."""
    return tuple(i.name if i.name.casefold() == i.id.casefold() else f"{i.name} ({i.id})"
                 for i in items)  # fmt: skip


def heading(failure: Failure, count: int = 1) -> str:
    """A group's heading: the cause in words, capitalised, without the fix; for several
    failures, without the value one of them sent (they may have sent different ones)."""
    cause = failure.cause_unquoted if count > 1 and failure.cause_unquoted else failure.cause
    return cause[:1].upper() + cause[1:]


ENV.filters["cause_heading"] = heading


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

    def routes(self) -> list[BaseRoute]:
        r, guarded = self.console.root, self.console.guarded
        return [
            Route(f"{r}/deliveries/{{id}}/edit", guarded(self.edit), methods=["GET", "POST"]),
            Route(f"{r}/deliveries/{{id}}/dismiss", guarded(self.dismiss), methods=["POST"]),
            Route(f"{r}/failures", guarded(self.failures), methods=["GET"]),
            Route(f"{r}/failures/group", guarded(self.group), methods=["GET"]),
            Route(f"{r}/failures/replay-all", guarded(self.replay_all), methods=["POST"]),
            Route(f"{r}/failures/replayed", guarded(self.replayed), methods=["GET"]),
        ]

    def _group_link(self, record: DeliveryRecord) -> str:
        query = {"error": record.error_code or "", "field": record.error_field or ""}
        return f"{self.console.root}/failures/group?{urlencode(query)}"

    async def _members(self, error: str | None, field: str, hook: str | None = None,
                       limit: int = INSIDE) -> list[DeliveryRecord]:  # fmt: skip
        """The open failures with one cause, newest first."""
        store = await self.console.store()
        return await store.list_deliveries(
            hook_id=hook or None, outcome="failed", error_code=error or None, error_field=field,
            since=self.console.s.timestamp() - WINDOW, open_only=True, limit=limit,
        )  # fmt: skip

    async def failures(self, request: Request, session: Session) -> Response:
        store = await self.console.store()
        groups = await store.failure_groups(self.console.s.timestamp() - WINDOW, limit=GROUPS)
        hooks = {h.id: h for h in await store.list_hooks()}
        rows = []
        account = self.console.last_account()
        for g in groups:
            hook = hooks.get(g.newest.hook_id or "")
            if (failure := failure_of(g.newest, choices_for(g.newest, hook, account))) is None:
                continue
            inside = await self._members(g.newest.error_code, g.newest.error_field or "")
            link = (f"{self.console.root}/deliveries/{g.newest.id}" if g.count == 1
                    else self._group_link(g.newest))  # fmt: skip
            rows.append(Row(
                g, failure, list(dict.fromkeys(self._hook_words(hooks, r.hook_id) for r in inside)),
                [p for p in dict.fromkeys(who(r) for r in inside) if p], link,
                replay_all_safe(inside) and g.count <= INSIDE,
            ))  # fmt: skip
        return self.console.render("failures.html", session, "failures", title="Failures",
                                   rows=rows, days=int(WINDOW // DAY))  # fmt: skip

    async def group(self, request: Request, session: Session) -> Response:
        q = request.query_params
        records = await self._members(q.get("error"), q.get("field", ""), q.get("hook"), GROUPS)
        hooks = {h.id: h for h in await (await self.console.store()).list_hooks()}
        newest = records[0] if records else None
        choices = choices_for(newest, hooks.get(newest.hook_id or ""),
                              self.console.last_account()) if newest else None  # fmt: skip
        return self.console.render(
            "failure_group.html", session, "failures", title="Failures with one cause",
            records=records, failure=failure_of(newest, choices) if newest else None,
            hooks=list(dict.fromkeys(self._hook_words(hooks, r.hook_id) for r in records)),
            limit=GROUPS, replay_all=replay_all_safe(records), error=q.get("error", ""),
            field=q.get("field", ""),
        )  # fmt: skip

    async def replay_all(self, request: Request, session: Session) -> Response:
        """Replay every open failure with one cause, where none can count twice: first a page
        asking to confirm, then (confirmed) each is replayed and the browser is sent to a page
        with one line per delivery, so a reload replays nothing."""
        form = await request.form()
        error, field = str(form.get("error") or ""), str(form.get("field") or "")
        records = await self._members(error, field, limit=INSIDE)
        root = self.console.root
        if not replay_all_safe(records):
            return self.console.render(
                "message.html", session, "failures", title="Not replayed", status=409,
                heading="Not replayed", link=f"{root}/failures",
                message="Replay all is only for failures where nothing reached PassKit, so "
                "nothing can be done twice; open each delivery instead.",
            )  # fmt: skip
        if form.get("confirmed") != "yes":
            return self.console.render(
                "failure_replay_all.html", session, "failures", title="Replay all?",
                records=records, failure=failure_of(records[0]), error=error, field=field,
            )  # fmt: skip
        done = []
        for record in records:
            try:
                done.append(await replay(self.console.endpoints, record))
            except CannotReplay:
                continue
        return RedirectResponse(f"{root}/failures/replayed?{urlencode({'ids': ','.join(done)})}",
                                303)  # fmt: skip

    async def replayed(self, request: Request, session: Session) -> Response:
        """What Replay all did: one line per delivery it sent again."""
        store = await self.console.store()
        found = [await store.get_delivery(i) for i in request.query_params.get("ids", "").split(",")
                 if i.startswith("dl_")][:INSIDE]  # fmt: skip
        records = [r for r in found if r is not None]
        return self.console.render("failure_replayed.html", session, "failures",
                                   title="Replayed", records=records)  # fmt: skip

    async def dismiss(self, request: Request, session: Session) -> Response:
        """Take an open failure off the list without sending anything (POST, then its page)."""
        delivery_id = request.path_params["id"]
        await (await self.console.store()).dismiss_failure(delivery_id, self.console.s.timestamp())
        return RedirectResponse(f"{self.console.root}/deliveries/{delivery_id}", 303)

    def replay_refused(self, record: DeliveryRecord, session: Session) -> Response | None:
        """The page refusing a Replay that cannot change the outcome; None when it can."""
        if record.resolved:
            return RedirectResponse(f"{self.console.root}/deliveries/{record.id}", 303)
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
        if record.resolved:  # fixed or dismissed: its page says by what
            return RedirectResponse(f"{console.root}/deliveries/{record.id}", 303)
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

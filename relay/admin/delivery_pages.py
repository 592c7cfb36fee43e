"""The console's delivery pages (`/admin/deliveries`): the list with its filters, one delivery
in words (its pass, a failure's cause and fix, Technical details), Replay and "Check the pass".
Failures by cause and Edit and resend are relay.admin.failure_pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.access.tokens import Hook
from relay.admin.failure_pages import choices_for
from relay.admin.replay import CannotReplay, replay
from relay.admin.results import Results
from relay.admin.sentences import OUTCOME_WORDS, Lexicon, lexicon, rows
from relay.admin.session import Session
from relay.admin.technical import card_preview, masked_count, masked_json, privacy_note
from relay.delivery.unused import ignored_fields
from relay.passkit.operations import CATALOG, dig
from relay.passkit.passcheck import PassChecker, PassCheckError, PassReading
from relay.store import OUTCOMES, DeliveryRecord
from relay.ui.fixes import failure_of

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext
    from relay.admin.failure_pages import FailurePages

PAGE_SIZE = 50


class DeliveryPages:
    def __init__(self, console: ConsoleContext, failure_pages: FailurePages) -> None:
        self.console = console
        self.failure_pages = failure_pages  # which failures a Replay could change
        self.s = console.s
        self.root = console.root
        self.render, self.store = console.render, console.store
        self.passes = PassChecker(self.s.settings.passkit_pass_url)  # "Check the pass"
        self.checks: Results[tuple[PassReading | None, str]] = Results()  # its readings

    def routes(self) -> list[BaseRoute]:
        r, guarded = f"{self.root}/deliveries", self.console.guarded
        return [
            Route(r, guarded(self.deliveries), methods=["GET"]),
            Route(f"{r}/{{id}}", guarded(self.delivery), methods=["GET"]),
            Route(f"{r}/{{id}}/replay", guarded(self.replay), methods=["POST"]),
            Route(f"{r}/{{id}}/pass", guarded(self.check_pass), methods=["POST"]),
        ]

    async def deliveries(self, request: Request, session: Session) -> Response:
        q = request.query_params
        hook_id, outcome = q.get("hook") or None, q.get("outcome") or None
        since, until = _moment(q.get("since")), _moment(q.get("until"))
        found = await (await self.store()).list_deliveries(
            hook_id=hook_id, outcome=outcome if outcome in OUTCOMES else None,
            since=since, until=until, before_id=q.get("before") or None, limit=PAGE_SIZE + 1,
        )  # fmt: skip
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        keep = {k: v for k, v in q.items() if k != "before" and v}
        hooks = await (await self.store()).list_hooks()
        words = await lexicon(self.console.account, self.s.library) if found else Lexicon()
        listed = rows(found, {hook.id: hook for hook in hooks}, words, self.s.library)
        outcomes = [(o, OUTCOME_WORDS.get(o, o)) for o in OUTCOMES]
        return self.render("deliveries.html", session, "deliveries", title="Deliveries",
                           rows=listed, more=more, filters=keep, outcomes=outcomes, hooks=hooks,
                           next_before=found[-1].id if more else "")  # fmt: skip

    async def delivery(self, request: Request, session: Session, **checked: Any) -> Response:
        """One delivery in words: the sentence, the pass (linked, and its card shown when it is
        the sandbox's), a failure's cause and fix; ids and JSON under Technical details.
        `checked`: what "Check the pass" found (see check_pass)."""
        store = await self.store()
        record = await store.get_delivery(request.path_params["id"])
        if record is None:
            return self.render("message.html", session, "deliveries", title="Not found",
                               heading="No such delivery", message="It may be past retention.",
                               link=f"{self.root}/deliveries", status=404)  # fmt: skip
        hook = await store.get_hook(record.hook_id) if record.hook_id else None
        words = await lexicon(self.console.account, self.s.library)
        words_account = self.console.last_account()  # as just read for the words: no new call
        [row] = rows([record], {hook.id: hook} if hook else {}, words, self.s.library)
        pass_url = self.pass_url(record)
        settings = self.s.settings
        template = self.s.library.get(record.template) if record.source == "hook" else None
        current = hook is not None and Hook(hook.id, hook.template, hook.params).version >= 2
        sent = record.request if isinstance(record.request, dict) else {}
        ignored = ignored_fields(template, sent, aliases=current) if template else []
        logged = (record.request, record.passkit_request, record.passkit_response)
        kept = self.checks.get((session.id, record.id), request.query_params.get("checked", ""))
        if kept is not None and not checked:
            checked = {"reading": kept[0], "unread": kept[1], "checked": True}
        return self.render("delivery.html", session, "deliveries", title=row.sentence.text,
                           d=record, row=row, pass_url=pass_url,
                           failure=failure_of(record, choices_for(record, hook, words_account)),
                           preview=card_preview(pass_url), masked=masked_count(*logged),
                           privacy=privacy_note(settings.log_payloads, settings.retention_days),
                           kept=settings.log_payloads, ignored=ignored,
                           json=masked_json, problem=request.query_params.get("problem", ""),
                           **checked)  # fmt: skip

    def pass_url(self, record: DeliveryRecord) -> str | None:
        """The pass a delivery issued or changed (its answer's `pass_url`), from the logged
        PassKit request and answer; None when there is none or it was not logged."""
        operation = CATALOG.get(record.operation)
        if record.outcome == "failed" or not operation or not operation.kind:
            return None
        if operation.pass_gone:
            return None
        answer = record.passkit_response.get("json") if record.passkit_response else None
        sent = record.passkit_request.get("json") if record.passkit_request else None
        pass_id = dig(answer, operation.id_in_answer) or dig(sent, operation.id_in_request)
        return self.s.client.pass_url(pass_id) if isinstance(pass_id, str) and pass_id else None

    async def check_pass(self, request: Request, session: Session) -> Response:
        """The delivery's pass read as Apple Wallet gets it (relay.passkit.passcheck), on
        request; POST/redirect/GET: the reading is kept a while under a token the redirect
        names, so Back or a reload shows it again without reading the pass again."""
        record = await (await self.store()).get_delivery(request.path_params["id"])
        if record is None:
            return RedirectResponse(f"{self.root}/deliveries", 303)
        pass_url = self.pass_url(record)
        reading: PassReading | None = None
        unread = ""
        if pass_url is None:
            unread = "This delivery names no pass to check."
        else:
            try:
                reading = await self.passes.check(pass_url)
            except PassCheckError as exc:
                unread = str(exc)
        token = self.checks.keep((session.id, record.id), (reading, unread))
        return RedirectResponse(f"{self.root}/deliveries/{record.id}?checked={token}#pass-check",
                                303)  # fmt: skip

    async def replay(self, request: Request, session: Session) -> Response:
        record = await (await self.store()).get_delivery(request.path_params["id"])
        if record is None:
            return RedirectResponse(f"{self.root}/deliveries", 303)
        if (refused := self.failure_pages.replay_refused(record, session)) is not None:
            return refused  # the same fields would end the same way
        try:
            new_id = await replay(self.console.endpoints, record)
        except CannotReplay as exc:
            return RedirectResponse(f"{self.root}/deliveries/{record.id}?problem={exc}", 303)
        return RedirectResponse(f"{self.root}/deliveries/{new_id}", 303)


def _moment(text: str | None) -> float | None:
    """A `datetime-local` input (`2026-11-25T14:30`), read as UTC."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None

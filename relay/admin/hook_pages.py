"""The console's hook pages (`/admin/hooks`): the list, the mint form, one hook's page (its URL,
the Zapier and Make steps, its latest deliveries) and Revoke. The public page a hook's URL
shows is relay.hooks.public_page."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.access.tokens import Hook, hook_url
from relay.access.urlguard import guard_of
from relay.admin.hook_samples import last_event_words
from relay.admin.sentences import Lexicon, lexicon, rows
from relay.admin.session import Session
from relay.hooks.minting import (
    Endpoint,
    MintError,
    account_check,
    countries,
    endpoint,
    grouped,
    mint,
    registered,
    settings_of,
)
from relay.passkit.account import Account
from relay.ui.html import form_text, form_texts

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext


# Ids picked under a parent's: a tier from the chosen program's tiers, and the like.
CHILDREN: dict[str, tuple[str, str]] = {
    "tier_id": ("program_id", "programs"),
    "offer_id": ("campaign_id", "campaigns"),
    "ticket_type_id": ("production_id", "productions"),
}


def child_lists(account: Account | None) -> dict[str, tuple[str, list[tuple[str, str, Any]]]]:
    """For each child param (tier_id…): its parent param, and one list per parent (id, name,
    children), so the form shows only the chosen program's tiers."""
    if account is None:
        return {}
    return {child: (parent, [(p.id, p.name, p.children) for p in getattr(account, projects)])
            for child, (parent, projects) in CHILDREN.items()}  # fmt: skip


def problems_by_field(
    problems: list[str], target: Endpoint | None
) -> tuple[dict[str, str], list[str]]:
    """Each problem beside the setting it is about (in words: its title, not its name), and
    the ones about no one setting."""
    specs = target.params if target else {}
    by_field: dict[str, str] = {}
    general: list[str] = []
    for problem in problems:
        named = [n for n in specs if re.search(rf"\b{re.escape(n)}\b", problem)]
        text = problem
        for name in named:
            title = specs[name].title
            text = text.replace(f"{title} ({name})", title).replace(name, title)
        if named:
            by_field[named[0]] = (by_field.get(named[0], "") + " " + text).strip()
        else:
            general.append(problem)
    return by_field, general


class HookPages:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console
        self.s = console.s
        self.root = console.root
        self.render, self.store = console.render, console.store
        self.last_account = console.last_account

    def routes(self) -> list[BaseRoute]:
        r, guarded = f"{self.root}/hooks", self.console.guarded
        return [
            Route(r, guarded(self.hooks), methods=["GET"]),
            Route(f"{r}/new", guarded(self.new_hook), methods=["GET", "POST"]),
            Route(f"{r}/{{id}}", guarded(self.hook), methods=["GET"]),
            Route(f"{r}/{{id}}/revoke", guarded(self.revoke), methods=["GET", "POST"]),
        ]

    async def hooks(self, request: Request, session: Session) -> Response:
        hooks = await (await self.store()).list_hooks()
        notice = request.query_params.get("notice", "")
        rows = []
        for hook in hooks:
            target = self._target(hook.template)
            specs = target.params if target else {}
            rows.append((hook, target, settings_of(specs, hook.params, self.last_account())))
        return self.render("hooks.html", session, "hooks", title="Hooks", rows=rows,
                           notice=notice)  # fmt: skip

    def _target(self, template: str) -> Endpoint | None:
        """What a hook was minted for, None when its template is gone."""
        try:
            return endpoint(self.s.library, template)
        except MintError:
            return None

    def _choices(self) -> list[tuple[str, list[Endpoint]]]:
        """The mint form's choices: plain names under Members, Coupons, Tickets, Stripe."""
        return grouped(self.s.library)

    async def new_hook(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("template", "")
        problems: list[str] = []
        values: dict[str, str] = {}
        label = ""
        if request.method == "POST":
            form = await request.form()
            name, label = form_text(form, "template"), form_text(form, "label").strip()
            values = {k[6:]: v for k, v in form_texts(form).items() if k.startswith("param:") and v}
            # A child id (a tier) is picked from the list of the parent chosen (its program).
            for child, (parent, _) in CHILDREN.items():
                picked = form_text(form, f"pick:{child}:{values.get(parent, '')}").strip()
                if picked:
                    values[child] = picked
            # A picker's "or another id" box, when filled, wins over the picker.
            values |= {k[6:]: v.strip() for k, v in form_texts(form).items()
                       if k.startswith("other:") and v.strip()}  # fmt: skip
            # Signed in the registry's order (it stores params sorted), so the hook's page
            # can sign them again into this very URL (itsdangerous is deterministic).
            values = dict(sorted(values.items()))
            base = self.console.public_base(request)
            # The ids are looked up in the account as PassKit lists it now (a tier created a
            # moment ago counts), when PassKit can be read.
            read, _ = await self.console.account(fresh=True)
            live = account_check(read) if read else None
            try:
                if taken := await self._label_taken(label):
                    raise MintError([taken])
                hook, _, _ = mint(self.s.signer, self.s.library, name, values, base, live=live,
                                  guard=guard_of(self.s.settings))  # fmt: skip
            except MintError as exc:
                problems = exc.problems
            else:
                await (await self.store()).add_hook(registered(hook, label))
                # Post/Redirect/Get: reloading the hook's page never mints a second hook.
                return RedirectResponse(f"{self.root}/hooks/{hook.id}?minted=1", 303)
        target: Endpoint | None = None
        if name:
            try:
                target = endpoint(self.s.library, name)
            except MintError as exc:
                problems = exc.problems
        # Pickers filled from PassKit for the ids a hook names; text boxes when it is not read.
        account, unread = await self.console.account() if target else (None, "")
        picks = account.choices() if account else {}
        # Only about what was chosen: a program not chosen warns of nothing.
        chosen = {p: values.get(p) or (s.default or "")
                  for p, s in (target.params.items() if target else ())}  # fmt: skip
        drafts = [warning for param, value in chosen.items() if account and value
                  and (warning := account.draft_warning(param, value))]  # fmt: skip
        by_field, general = problems_by_field(problems, target)
        return self.render("hook_new.html", session, "hooks", title="New hook",
                           choices=self._choices(), target=target, values=values, label=label,
                           template=self.s.library.get(name), problems=general,
                           by_field=by_field, picks=picks, unread=unread, drafts=drafts,
                           countries=countries(), children=child_lists(account),
                           status=422 if problems else 200)  # fmt: skip

    async def _label_taken(self, label: str) -> str:
        """Why `label` cannot name a new hook ("" when it can): an active hook already has it.
        Labels tell hooks apart in the lists and the deliveries filter, and a gym owner reads
        the label, not the id; a revoked hook's label is free again."""
        if not label:
            return ""
        for other in await (await self.store()).list_hooks(include_revoked=False):
            if other.label.casefold() == label.casefold():
                target = self._target(other.template)
                what = target.title if target else other.template
                return (
                    f"Another hook (“{what}”) is already labelled “{label}”: choose another "
                    "label, e.g. where this URL will be used."
                )
        return ""

    async def hook(self, request: Request, session: Session) -> Response:
        """One hook's page: its URL (signed again: the same Hook and key give the same token),
        the Zapier and Make steps, its public test page and its latest deliveries."""
        store = await self.store()
        record = await store.get_hook(request.path_params["id"])
        if record is None:
            return self.no_such_hook(session)
        target = self._target(record.template)
        hook = Hook(record.id, record.template, dict(record.params))
        kind = target.kind if target else "hooks"
        url = hook_url(self.console.public_base(request), self.s.signer.mint(hook), kind=kind)
        minted = bool(request.query_params.get("minted"))
        drafts: list[str] = []
        if minted:
            account, _ = await self.console.account()
            drafts = [w for k, v in hook.params.items()
                      if account and (w := account.draft_warning(k, v))]  # fmt: skip
        recent = await store.list_deliveries(hook_id=record.id, limit=10)
        # Each in one sentence, as the deliveries list says them (not codes and log text).
        words = await lexicon(self.console.account, self.s.library) if recent else Lexicon()
        recent_rows = rows(recent, {record.id: record}, words, self.s.library)
        specs = target.params if target else {}
        settings = settings_of(specs, hook.params, self.last_account())
        title = record.label or (target.title if target else record.template)
        last_event = ""
        if kind == "passkit":  # when PassKit last sent an event (samples: relay.admin.hook_samples)
            last_event = last_event_words(await store.last_real_event(record.id))
        return self.render("hook_minted.html", session, "hooks", title=title,
                           hook=hook, record=record, target=target, url=url, minted=minted,
                           label=record.label, template=self.s.library.get(record.template),
                           drafts=drafts, recent=recent_rows, settings=settings,
                           last_event=last_event,
                           notice=request.query_params.get("notice", ""),
                           stripe_ready=bool(self.s.settings.stripe_webhook_secrets))  # fmt: skip

    def no_such_hook(self, session: Session) -> Response:
        return self.render("message.html", session, "hooks", title="No such hook",
                           heading="No such hook", message="It is not in the registry.",
                           link=f"{self.root}/hooks", status=404)  # fmt: skip

    async def revoke(self, request: Request, session: Session) -> Response:
        store = await self.store()
        hook = await store.get_hook(request.path_params["id"])
        if hook is None:
            return self.no_such_hook(session)
        if request.method == "POST":
            await store.revoke_hook(hook.id, time.time())
            self.s.revocations.forget()
            name = f"“{hook.label}”" if hook.label else "the hook"
            notice = (f"Revoked {name}: its URL no longer works, so a zap or scenario still "
                      "using it is refused.")  # fmt: skip
            return RedirectResponse(f"{self.root}/hooks?{urlencode({'notice': notice})}", 303)
        target = self._target(hook.template)
        return self.render("hook_revoke.html", session, "hooks", title="Revoke hook", hook=hook,
                           target=target)  # fmt: skip

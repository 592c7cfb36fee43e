"""Finding a person (`/admin/search`) and their page (`/admin/people/<index>`): every delivery
about them, their pass, their spend, and Erase.

The search box POSTs (with the session's CSRF token, like every console form), so no email or
name lands in a URL, a router's log or the browser's history; the answer is a redirect to the
person's page, addressed by a blind index (relay.sealing), never by what was typed. Emails,
external ids and Stripe customer ids are found exactly through the blind indexes the log keeps
of them; names by whole word, through the blind indexes of each word of a name
(relay.store.personal.name_words): the data stays sealed at rest, and the search never opens
more than the rows it found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.customers import customer_of, row
from relay.admin.sentences import describe, lexicon, rows
from relay.admin.session import Session
from relay.brokentext import mend_text
from relay.sealing import normalised
from relay.store import DeliveryRecord
from relay.store.personal import name_index, people_in, words

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

SHOWN = 200  # deliveries on a person's page
READ = 200  # deliveries a name search reads to tell people apart
_INDEX = re.compile(r"^[0-9a-f]{32}(\.[0-9a-f]{32}){0,7}$")


@dataclass(frozen=True)
class Found:
    """One person a name search found: who in words, their page."""

    who: str
    link: str
    deliveries: int


class PeoplePages:
    def __init__(
        self, console: ConsoleContext, pass_url: Callable[[DeliveryRecord], str | None]
    ) -> None:
        self.console = console
        self.pass_url = pass_url  # a delivery's pass (relay.admin.delivery_pages)

    def routes(self) -> list[BaseRoute]:
        r, guarded = self.console.root, self.console.guarded
        return [
            Route(f"{r}/search", guarded(self.search), methods=["GET", "POST"]),
            Route(f"{r}/people/{{index}}", guarded(self.person), methods=["GET"]),
        ]

    def _link(self, *indexes: str) -> str:
        return f"{self.console.root}/people/{'.'.join(indexes)}"

    async def search(self, request: Request, session: Session) -> Response:
        """GET: the box alone. POST `q`: to the person's page, a choice of people, or why not."""
        q, problem, found = "", "", list[Found]()
        if request.method == "POST":
            q = mend_text(str((await request.form()).get("q") or "")).strip()[:200]
            if not q:
                problem = "Type an email, an external ID, a Stripe customer ID or a name."
            else:
                found = await self.find(q)
                if len(found) == 1:
                    return RedirectResponse(found[0].link, 303)
                if not found:
                    problem = (
                        "No one with that email, ID or name is in the delivery log. Emails and "
                        "IDs must be typed whole; names are found by whole words."
                    )
        return self.console.render("search.html", session, "deliveries", title="Find a person",
                                   q=q, problem=problem, found=found)  # fmt: skip

    async def find(self, q: str) -> list[Found]:
        """The people `q` names: one by an identifier's blind index, else by a name's words."""
        sealer = self.console.s.sealer
        store = await self.console.store()
        index = sealer.blind(q)
        if matched := await store.deliveries_by_index([index], limit=1):
            # One page per person: addressed by their email when the log has it with this id.
            ids = people_in(matched[0].request)
            if normalised(q) in {normalised(i) for i in ids}:
                index = sealer.blind(_preferred(ids))
            return [Found(q, self._link(index), 0)]
        name = words(q)
        if not name:
            return []
        records = await store.deliveries_by_index([name_index(sealer, w) for w in name], READ)
        people: dict[str, tuple[str, list[DeliveryRecord]]] = {}
        for record in records:
            ids = people_in(record.request)
            key = sealer.blind(_preferred(ids)) if ids else ""
            people.setdefault(key, (describe(record).who, []))[1].append(record)
        if "" in people and len(people) > 1:  # rows the log kept no identifier of
            del people[""]
        return [
            Found(who, self._link(key) if key else self._link(*(name_index(sealer, w)
                                                                 for w in name)), len(listed))
            for key, (who, listed) in people.items()
        ]  # fmt: skip

    async def person(self, request: Request, session: Session) -> Response:
        index = request.path_params["index"]
        if not _INDEX.match(index):
            return RedirectResponse(f"{self.console.root}/search", 303)
        store = await self.console.store()
        records = await store.deliveries_by_index(index.split("."), SHOWN)
        if not records:
            return self.console.render(
                "message.html", session, "deliveries", title="Not found", status=404,
                heading="No one found", message="Nothing about this person is in the log "
                "(erased, or past retention).", link=f"{self.console.root}/search",
            )  # fmt: skip
        sealer = self.console.s.sealer
        ids = dict.fromkeys(i for r in records for i in people_in(r.request, r.passkit_request))
        # Erase is by an identifier: the one this page is addressed by, else the person's own.
        mine = [i for i in ids if sealer.blind(i) == index] or [
            i for i in ids if "@" in i or not i.startswith("cus_")
        ]
        customers = dict.fromkeys(c for r in records if (c := customer_of(r)))
        spend = [row(await store.spend_of(c), "") for c in customers]
        pass_url = next((u for r in records if r.outcome == "ok" and (u := self.pass_url(r))), None)
        hooks = {h.id: h for h in await store.list_hooks()}
        words_ = await lexicon(self.console.account, self.console.s.library)
        listed = rows(records, hooks, words_, self.console.s.library)
        named = [r.sentence.who for r in listed if r.sentence.who != "a member"]
        who = next((w for w in named if "@" not in w), named[0] if named else "This person")
        return self.console.render(
            "person.html", session, "deliveries", title=who, who=who, rows=listed,
            pass_url=pass_url, spend=[s for s in spend if s["totals"]],
            erase_as=mine[0] if mine else "", more=len(records) == SHOWN,
            can_passkit=self.console.s.settings.has_passkit_credentials,
        )  # fmt: skip


def _preferred(ids: tuple[str, ...]) -> str:
    """The identifier a person's page is addressed by: the email, else the first one."""
    emails = sorted(normalised(i) for i in ids if "@" in i)
    return emails[0] if emails else ids[0]

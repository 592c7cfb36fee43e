"""The console's Erase page (`/admin/erase`): remove one person from everything the relay keeps
(relay.delivery.erase), as `relay erase` does. Two steps, both POSTs with the session's CSRF token:
the first says in words what would go and asks again; only the second erases, then redirects
(POST/redirect/GET) to the result, so a reload shows it again and erases nothing (the PassKit
delete is never sent twice)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.results import Results
from relay.admin.session import Session
from relay.brokentext import mend_text
from relay.delivery.erase import erase

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext


class ErasePage:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console
        self.done: Results[dict[str, Any]] = Results()  # what an erase removed, for its page

    def routes(self) -> list[BaseRoute]:
        r, guarded = self.console.root, self.console.guarded
        return [Route(f"{r}/erase", guarded(self.erase), methods=["GET", "POST"])]

    async def erase(self, request: Request, session: Session) -> Response:
        services = self.console.s
        can_passkit = services.settings.has_passkit_credentials
        context: dict[str, Any] = {"who": "", "passkit": False, "can_passkit": can_passkit,
                                   "step": "ask", "problem": ""}  # fmt: skip
        done = self.done.get((session.id,), request.query_params.get("done", ""))
        if request.method == "GET" and done is not None:
            context.update(done)
        elif request.method == "GET" and request.query_params.get("done"):
            context["problem"] = "That erase is finished; its summary is no longer shown here."
        if request.method == "POST":
            form = await request.form()
            who = mend_text(str(form.get("who") or "")).strip()
            passkit = can_passkit and form.get("passkit") == "yes"
            context.update(who=who, passkit=passkit)
            store = await self.console.store()
            if not who:
                context["problem"] = "Type the person's email, external id or Stripe customer id."
            elif form.get("confirmed") != "yes":
                found = await store.person_deliveries(who)
                context.update(step="confirm", deliveries=len(found))
            else:
                client = services.client if passkit else None
                erased = await erase(store, services.sealer, who, client=client)
                result = {"who": who, "step": "done", "lines": erased.lines(),
                          "total": erased.total, "found": erased.found}  # fmt: skip
                token = self.done.keep((session.id,), result)
                return RedirectResponse(f"{self.console.root}/erase?done={token}", 303)
        return self.console.render("erase.html", session, "erase", title="Erase a person",
                                   **context)  # fmt: skip

"""The admin console at `/admin` (on when RELAY_ADMIN_PASSWORD is set): mint and revoke hooks,
watch deliveries, understand and replay failures, try templates. Server-rendered, no JavaScript
needed but for copy buttons; every POST checks the session's CSRF token."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.access.tokens import Hook
from relay.admin.charts import Hour, hourly_svg
from relay.admin.context import ConsoleContext
from relay.admin.customers import CustomersPage
from relay.admin.delivery_pages import DeliveryPages
from relay.admin.erase import ErasePage
from relay.admin.events import EventsPage
from relay.admin.failure_pages import FailurePages
from relay.admin.hook_pages import HookPages
from relay.admin.hook_samples import HookSamples
from relay.admin.imports import ImportPage
from relay.admin.people import PeoplePages
from relay.admin.replay import fields_from_log
from relay.admin.sentences import Lexicon, lexicon, rows
from relay.admin.session import COOKIE, MAX_AGE, Session
from relay.errors import RelayError
from relay.hooks.public_page import form_result
from relay.ui.fixes import label as field_label
from relay.ui.html import form_text, form_texts, page
from relay.web.endpoints import Endpoints, new_request_id, read_form

LOGIN_FORM_LIMIT = 4 * 1024  # bytes: a password, the form's token and where to go next
LOGIN_FORM_FIELDS = 8
NOT_THE_FORM = "That was not the sign-in form: please try again."


def post_only_redirects(routes: list[BaseRoute]) -> list[BaseRoute]:
    """A GET route for every POST-only address (a Replay's, Check the pass's, an opened link or
    a typed address): a redirect to the page it belongs to, the nearest address above it that
    answers GET, so no console address answers a browser with JSON."""
    pages = {r.path for r in routes if isinstance(r, Route) and "GET" in (r.methods or ())}
    extra: list[BaseRoute] = []
    for route in routes:
        if not isinstance(route, Route) or "GET" in (route.methods or ()):
            continue
        parent = route.path
        while "/" in parent.strip("/") and parent not in pages:
            parent = parent.rsplit("/", 1)[0]
        extra.append(Route(route.path, _redirect_to(parent), methods=["GET"]))
    return extra


def _redirect_to(template: str) -> Any:
    async def redirect(request: Request) -> Response:
        target = template
        for name, value in request.path_params.items():
            target = target.replace(f"{{{name}}}", quote(str(value), safe=""))
        return RedirectResponse(target, 303)

    return redirect


class Console(ConsoleContext):
    """The console's own pages (sign-in, overview, templates, PassKit) and the routes to every
    page; the other pages live in their own modules and are given this context."""

    def __init__(self, endpoints: Endpoints, root: str = "/admin") -> None:
        super().__init__(endpoints, root)
        self.failure_pages = FailurePages(self)  # failures by cause, Edit and resend

    def routes(self) -> list[BaseRoute]:
        routes = self._routes()
        return [*routes, *post_only_redirects(routes)]

    def _routes(self) -> list[BaseRoute]:
        r = self.root
        return [
            Route(f"{r}/login", self.login, methods=["GET", "POST"]),
            Route(f"{r}/logout", self.guarded(self.logout), methods=["POST"]),
            Route(f"{r}/", self.guarded(self.overview), methods=["GET"]),
            Route(r, self.guarded(self.overview), methods=["GET"]),
            *HookPages(self).routes(),  # /admin/hooks: list, mint, one hook, revoke
            *HookSamples(self).routes(),  # /admin/hooks/{id}/sample: a PassKit events sample
            # /admin/deliveries: list, one, replay, check pass
            *(deliveries := DeliveryPages(self, self.failure_pages)).routes(),
            # /admin/search and /admin/people: find a person, their page
            *PeoplePages(self, deliveries.pass_url).routes(),
            *self.failure_pages.routes(),  # /admin/failures: to-do list, Edit and resend
            Route(f"{r}/templates", self.guarded(self.templates), methods=["GET"]),
            Route(f"{r}/passkit", self.guarded(self.passkit), methods=["GET"]),
            *EventsPage(self).routes(),
            *CustomersPage(self).routes(),  # /admin/customers: spend and tier (relay.stripe.spend)
            *ErasePage(self).routes(),  # /admin/erase: remove one person (relay.delivery.erase)
            Route(f"{r}/templates/{{name:path}}", self.guarded(self.template),
                  methods=["GET", "POST"]),
            *ImportPage(self).routes(),  # /admin/import: members from a CSV (relay.admin.imports)
        ]  # fmt: skip

    # -- signing in ----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        target = request.query_params.get("next", "")
        target = target if target.startswith(self.root) else f"{self.root}/"
        error = ""
        status = 200
        notice = "You are signed out." if request.query_params.get("signed_out") else ""
        if request.method == "POST":
            address = request.client.host if request.client else "unknown"
            store = await self.store()
            # Counted before anything is read or checked, in one statement in the store: every
            # guess, however many arrive at once and in whichever process, spends the budget.
            wait = await self.limiter.attempt(store, address)
            if wait:
                error, status = f"Too many sign-in attempts: try again in {int(wait)} s.", 429
            else:
                try:
                    form = await read_form(request, LOGIN_FORM_LIMIT, fields=LOGIN_FORM_FIELDS)
                except RelayError as exc:
                    return page(
                        "login.html",
                        exc.status,
                        root=self.root,
                        next=target,
                        csrf=self.sessions.login_token(),
                        notice="",
                        error=NOT_THE_FORM,
                    )
                if not self.sessions.login_token_ok(form_text(form, "csrf")):
                    error, status = "The sign-in form expired: please try again.", 403
                elif self.sessions.password_matches(form_text(form, "password")):
                    await self.limiter.succeeded(store, address)
                    _, cookie = self.sessions.new_session()
                    response = RedirectResponse(target, 303)
                    response.set_cookie(COOKIE, cookie, max_age=MAX_AGE, path=self.root,
                                        httponly=True, samesite="lax",
                                        secure=request.url.scheme == "https")  # fmt: skip
                    return response
                else:
                    error, status = "That password is not right.", 401
        return page("login.html", status, root=self.root, csrf=self.sessions.login_token(),
                    next=target, error=error, notice=notice)  # fmt: skip

    async def logout(self, request: Request, session: Session) -> Response:
        # Ended on the server, not only in this browser: a copy of the cookie stops working too.
        await (await self.store()).end_admin_session(session.id, self.s.timestamp())
        response = RedirectResponse(f"{self.root}/login?signed_out=1", 303)
        response.delete_cookie(COOKIE, path=self.root)
        return response

    # -- pages ---------------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> Response:
        store = await self.store()
        now = self.s.timestamp()
        stats = await store.delivery_stats(now - 86_400)
        first_hour = (int(now) // 3600 - 23) * 3600
        counts = await store.delivery_hours(first_hour)
        hours = [
            Hour(
                time.strftime("%H:00", time.gmtime(first_hour + n * 3600)),
                sum(c for outcome, c in counts.get(n, {}).items() if outcome != "failed"),
                counts.get(n, {}).get("failed", 0),
            )
            for n in range(24)
        ]
        rate = None if not stats.total else 100 * (stats.total - stats.failed) / stats.total
        hooks = {hook.id: hook for hook in await store.list_hooks()}
        failed = await store.list_deliveries(outcome="failed", open_only=True, limit=5)
        open_failures = await store.open_failures(now - 86_400)
        words = await lexicon(self.account, self.s.library) if failed else Lexicon()
        failures = rows(failed, hooks, words, self.s.library)
        return self.render("overview.html", session, "overview", title="Overview", stats=stats,
                           rate=rate, chart=hourly_svg(hours), failures=failures,
                           no_hooks=not hooks, open_failures=open_failures)  # fmt: skip

    async def passkit(self, request: Request, session: Session) -> Response:
        account, problem = await self.account(fresh=True)
        return self.render("passkit.html", session, "passkit", title="PassKit", account=account,
                           problem=problem, api_url=self.s.settings.passkit_api_url)  # fmt: skip

    async def templates(self, request: Request, session: Session) -> Response:
        return self.render("templates.html", session, "templates", title="Templates",
                           templates=list(self.s.library.templates.values()))  # fmt: skip

    async def template(self, request: Request, session: Session) -> Response:
        template = self.s.library.get(request.path_params["name"])
        if template is None:
            return self.render("message.html", session, "templates", title="Not found",
                               heading="No such template", message="",
                               link=f"{self.root}/templates", status=404)  # fmt: skip
        tried: dict[str, Any] | None = None
        values: dict[str, str] = {}
        if request.method == "POST":
            values = form_texts(await request.form())
            params = {k[6:]: v for k, v in values.items() if k.startswith("param:") and v}
            fields = {k[6:]: v for k, v in values.items() if k.startswith("field:") and v}
            tried = await self._dry_run(template.name, params, fields)
        # The dry run's answer in words (as the hook's test page says it), the code second.
        result = form_result(tried, template) if tried is not None else None
        return self.render("template.html", session, "templates", title=template.title,
                           template=template, tried=tried, result=result, values=values,
                           label=field_label)  # fmt: skip

    async def _dry_run(
        self, name: str, params: dict[str, str], fields: dict[str, str]
    ) -> dict[str, Any]:
        flat = fields_from_log(fields)
        hook = Hook("hk_try", name, params)
        return await self.s.relay.try_out(hook, flat, list(flat), request_id=new_request_id())

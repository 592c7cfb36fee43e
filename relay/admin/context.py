"""What the console's pages share (`ConsoleContext`): the services, the signed-in guard with its
CSRF check, rendering, the store and the PassKit account cache. It sits below the pages and the
console that routes to them (relay.admin.console), so nothing here imports a page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.admin.session import COOKIE, LoginLimiter, Session, SessionSigner, csrf_ok
from relay.errors import RelayError
from relay.passkit.account import Account
from relay.store import Store
from relay.ui.html import form_text, page
from relay.web.endpoints import Endpoints, read_form

Handler = Callable[[Request, Session], Awaitable[Response]]
ACCOUNT_TIMEOUT = 5.0  # seconds a page waits for PassKit's lists
# A console form (a template tried, a delivery edited): its fields, never files, a few hundred
# at most. The import's upload asks for more (relay.admin.imports).
FORM_LIMIT = 512 * 1024
FORM_FIELDS = 1000


class ConsoleContext:
    """What every console page shares: the services, the sign-in guard, rendering, the store and
    the PassKit account cache. The pages are given this, not the console that routes to them, so
    no page imports the console."""

    def __init__(self, endpoints: Endpoints, root: str = "/admin") -> None:
        self.endpoints = endpoints
        self.s = endpoints.s
        password = self.s.settings.admin_password
        assert password is not None
        self.sessions = SessionSigner(self.s.settings.secret_keys[0].reveal(), password.reveal())
        self.limiter = LoginLimiter()
        self.root = root

    def guarded(
        self, handler: Handler, *, form_limit: int = FORM_LIMIT, files: int = 0
    ) -> Callable[[Request], Awaitable[Response]]:
        """No session, or one that signed out: to the login page (a POST: 403), before any of
        the body is read. A POST's form is read only then, at most `form_limit` bytes,
        FORM_FIELDS fields and `files` files (413 beyond); without the session's CSRF token:
        403."""

        async def endpoint(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                if request.method != "GET":
                    return self.refused("Your session has ended: sign in again.")
                return RedirectResponse(f"{self.root}/login?next={request.url.path}", 303)
            if request.method == "POST":
                try:
                    form = await read_form(request, form_limit, fields=FORM_FIELDS, files=files)
                except RelayError as exc:
                    return page("message.html", exc.status, title="Not sent",
                                heading="The form was not sent", message=exc.message,
                                link=f"{self.root}/", root=self.root)  # fmt: skip
                if not csrf_ok(session, form_text(form, "csrf")):
                    return self.refused("The form's security token is missing or wrong.")
            return await handler(request, session)

        return endpoint

    async def session(self, request: Request) -> Session | None:
        """The request's session, unless its cookie is missing, forged, expired, signed with
        another password, or signed out. The store is read on every admin request (there are
        few) rather than cached, so a sign-out in one process counts in all of them at once."""
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None or await (await self.store()).admin_session_ended(session.id):
            return None
        return session

    def refused(self, why: str) -> Response:
        return page("message.html", 403, title="Refused", heading="Refused", message=why,
                    link=f"{self.root}/", root=self.root)  # fmt: skip

    def render(self, name: str, session: Session, section: str, **context: Any) -> Response:
        status = context.pop("status", 200)
        return page(name, status, root=self.root, csrf=session.csrf, section=section, **context)

    async def store(self) -> Store:
        return await self.s.store.get()

    def public_base(self, request: Request) -> str:
        """Where minted URLs point: RELAY_PUBLIC_URL when it is set, else the address the
        operator's browser used (its Host header; the scheme as the trusted proxy saw it, see
        relay.web.proxies.TrustedHop), not the `http://localhost:$PORT` fallback."""
        settings = self.s.settings
        return settings.public_url if settings.public_url_set else str(request.base_url)

    def last_account(self) -> Account | None:
        """The PassKit account as last read (to name ids on a page), without reading it."""
        return self.s.accounts.last()

    async def account(self, *, fresh: bool = False) -> tuple[Account | None, str]:
        """The PassKit account (relay.passkit.account), from the services' cache that the public
        hook pages share, read again after a minute or when `fresh`; else None and the one line
        saying why not."""
        return await self.s.accounts.read(fresh=fresh, timeout=ACCOUNT_TIMEOUT)

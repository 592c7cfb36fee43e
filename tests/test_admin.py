"""The admin console's guard rails over ASGI: sign-in, sessions, CSRF, the login limiter, no
secrets on any page, replays. The browser walk-through is in test_admin_browser.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import httpx
import pytest
import respx
from itsdangerous import URLSafeTimedSerializer

from relay.store import Store

from .conftest import PASSKIT_SECRET, SECRET_KEY, SHIPPED_TEMPLATES, make_settings, mint

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
ENROL = mint("member-enrol", program_id="p1", tier_id="base")
PROGRAM = "3iGxtXJd7x9fU2yYWcdBvQ"  # minting checks the shape of PassKit ids: 22 characters
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


@pytest.fixture
def make_admin(
    make_client: Callable[..., httpx.AsyncClient], store: Store
) -> Callable[..., httpx.AsyncClient]:
    def build(base_url: str = "https://relay.example.com") -> httpx.AsyncClient:
        client = make_client(make_settings(RELAY_ADMIN_PASSWORD=PASSWORD), store=store)
        client.base_url = httpx.URL(base_url)
        return client

    return build


@pytest.fixture
def admin(make_admin: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return make_admin()


def token_in(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/admin/login")
    return await client.post(
        "/admin/login", data={"csrf": token_in(form.text), "password": password}
    )


async def test_pages_need_a_session(admin: httpx.AsyncClient) -> None:
    for path in ("/admin", "/admin/", "/admin/hooks", "/admin/deliveries", "/admin/templates"):
        answer = await admin.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/admin/login?next=/admin")


async def test_sign_in_sets_a_safe_cookie_and_lands_on_the_page_asked_for(
    make_admin: Callable[..., httpx.AsyncClient],
) -> None:
    for base, secure in (("https://relay.example.com", True), ("http://localhost", False)):
        client = make_admin(base)
        form = await client.get("/admin/login?next=/admin/hooks")
        answer = await client.post(
            "/admin/login?next=/admin/hooks",
            data={"csrf": token_in(form.text), "password": PASSWORD},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/hooks"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/admin" in cookie
        assert ("secure" in cookie) is secure
        assert PASSWORD.lower() not in cookie
        assert (await client.get("/admin/hooks")).status_code == 200


async def test_wrong_password_then_rate_limited(admin: httpx.AsyncClient) -> None:
    answer = await sign_in(admin, "guess")
    assert answer.status_code == 401 and "not right" in answer.text
    for _ in range(4):
        await sign_in(admin, "guess")
    limited = await sign_in(admin)  # even the right password waits now
    assert limited.status_code == 429 and "Too many" in limited.text


async def test_login_without_its_form_token_is_refused(admin: httpx.AsyncClient) -> None:
    answer = await admin.post("/admin/login", data={"password": PASSWORD})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/logout", {}),
        ("/admin/hooks/new", {"template": "member-lookup", "param:program_id": "p1"}),
        ("/admin/templates/member-lookup", {"field:external_id": "x"}),
    ],
)
@pytest.mark.parametrize("csrf", [None, "forged-token"])
async def test_posts_without_the_sessions_csrf_token_are_403(
    path: str, data: dict[str, str], csrf: str | None, admin: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(admin)
    if csrf:
        data = {**data, "csrf": csrf}
    answer = await admin.post(path, data=data)
    assert answer.status_code == 403 and "security token" in answer.text
    assert await store.list_hooks() == []


async def test_forged_session_cookie_is_no_session(admin: httpx.AsyncClient) -> None:
    admin.cookies.set("relay_admin", "eyJjc3JmIjoieCJ9.forged.sig", path="/admin")
    assert (await admin.get("/admin/hooks")).status_code == 303


async def test_mint_revoke_and_logout(admin: httpx.AsyncClient, store: Store) -> None:
    await sign_in(admin)
    form = await admin.get("/admin/hooks/new?template=member-upsert")
    csrf = token_in(form.text)
    missing = await admin.post("/admin/hooks/new", data={"csrf": csrf, "template": "member-upsert"})
    assert missing.status_code == 422 and "program_id" in missing.text
    minted = await admin.post("/admin/hooks/new", data={
        "csrf": csrf, "template": "member-upsert", "label": "HubSpot",
        "param:program_id": PROGRAM, "param:tier_id": "base", "param:timezone": "UTC"})  # fmt: skip
    [hook] = await store.list_hooks()
    assert minted.status_code == 303  # Post/Redirect/Get: to the hook's own page
    assert minted.headers["location"] == f"/admin/hooks/{hook.id}?minted=1"
    minted = await admin.get(minted.headers["location"])
    assert minted.status_code == 200 and "Webhooks by Zapier" in minted.text
    assert "HTTP › Make a request" in minted.text
    url = re.search(r'id="minted-url">([^<]+)<', minted.text).group(1)  # type: ignore[union-attr]
    assert url.startswith("https://relay.example.com/hooks/")
    assert hook.label == "HubSpot"
    assert hook.params == {"program_id": PROGRAM, "tier_id": "base", "timezone": "UTC", "v": "2"}

    confirm = await admin.get(f"/admin/hooks/{hook.id}/revoke")
    assert "cannot be undone" in confirm.text
    done = await admin.post(f"/admin/hooks/{hook.id}/revoke", data={"csrf": csrf})
    assert done.status_code == 303
    assert (await store.get_hook(hook.id)).revoked  # type: ignore[union-attr]
    refused = await admin.post(url.removeprefix("https://relay.example.com"), data={"x": "y"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_token"

    out = await admin.post("/admin/logout", data={"csrf": csrf})
    assert out.status_code == 303 and 'relay_admin=""' in out.headers["set-cookie"]
    assert out.headers["location"] == "/admin/login?signed_out=1"


async def test_logout_ends_the_session_on_the_server(
    admin: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(admin)
    copy = admin.cookies["relay_admin"]  # what a thief (or a second tab) still holds
    csrf = token_in((await admin.get("/admin/hooks")).text)
    out = await admin.post("/admin/logout", data={"csrf": csrf})
    login = await admin.get(out.headers["location"])
    assert login.status_code == 200 and "You are signed out." in login.text
    assert "signed out" not in (await admin.get("/admin/login")).text

    admin.cookies.set("relay_admin", copy, domain="relay.example.com", path="/admin")
    stale = await admin.get("/admin/hooks")
    assert stale.status_code == 303
    assert stale.headers["location"] == "/admin/login?next=/admin/hooks"
    mint_form = {"csrf": csrf, "template": "member-lookup", "param:program_id": "p1"}
    refused = await admin.post("/admin/hooks/new", data=mint_form)
    assert refused.status_code == 403 and "session has ended" in refused.text
    assert await store.list_hooks() == []

    await sign_in(admin)  # a new session is not the ended one
    assert admin.cookies["relay_admin"] != copy
    assert (await admin.get("/admin/hooks")).status_code == 200


async def test_a_cookie_from_before_session_ids_is_signed_out(admin: httpx.AsyncClient) -> None:
    # Signed exactly as the console signed cookies before they carried a session id.
    key = SECRET_KEY + hashlib.sha256(PASSWORD.encode()).hexdigest()
    signer = URLSafeTimedSerializer(key, salt="passkit-relay.admin.session")
    admin.cookies.set("relay_admin", signer.dumps({"csrf": "tok"}), path="/admin")
    answer = await admin.get("/admin/hooks")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login")
    refused = await admin.post("/admin/logout", data={"csrf": "tok"})
    assert refused.status_code == 403 and "session has ended" in refused.text
    # The same signature with a session id is a session: only the missing id refused it.
    admin.cookies.set("relay_admin", signer.dumps({"sid": "s1", "csrf": "tok"}), path="/admin")
    assert (await admin.get("/admin/hooks")).status_code == 200


async def test_no_page_shows_a_secret_or_a_jwt(
    admin: httpx.AsyncClient, passkit: respx.MockRouter, store: Store
) -> None:
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))
    secret_field = "sk_live_51Habcdefghijklmnop"
    await admin.post(ENROL, data={"external_id": "C1", "email": "a@b.co", "api_key": secret_field,
                                  "note": "Bearer abc.def.ghi"})  # fmt: skip
    await admin.post(ENROL, data={"external_id": "C2"})
    await sign_in(admin)
    [failed] = await store.list_deliveries(outcome="failed")
    [ok] = await store.list_deliveries(outcome="ok")
    pages = ["/admin/", "/admin/hooks", "/admin/hooks/new?template=member-enrol",
             "/admin/deliveries", f"/admin/deliveries/{failed.id}", f"/admin/deliveries/{ok.id}",
             "/admin/templates", "/admin/templates/member-enrol"]  # fmt: skip
    token = ENROL.rsplit("/", 1)[1]
    for path in pages:
        html = (await admin.get(path)).text
        assert "<h1>" in html, path
        for secret in (SECRET_KEY, PASSKIT_SECRET, PASSWORD, secret_field, "abc.def.ghi", token):
            assert secret not in html, (path, secret)
        assert not JWT.search(html), path


async def test_replay_runs_the_delivery_again(
    admin: httpx.AsyncClient, passkit: respx.MockRouter, store: Store
) -> None:
    route = passkit.post("/members/member")
    route.side_effect = [httpx.Response(400, json={"code": 3, "message": "tier gold missing"}),
                         httpx.Response(200, json={"id": "m1"})]  # fmt: skip
    # The failed enrol is looked up by its external id before it fails: no such member.
    passkit.get(f"/members/member/externalId/{PROGRAM}/C9").mock(return_value=httpx.Response(404))
    await sign_in(admin)
    form = await admin.get("/admin/hooks/new?template=member-enrol")
    minted = await admin.post("/admin/hooks/new", data={
        "csrf": token_in(form.text), "template": "member-enrol",
        "param:program_id": PROGRAM, "param:tier_id": "gold", "param:timezone": "UTC"})  # fmt: skip
    minted = await admin.get(minted.headers["location"])
    url = re.search(r'id="minted-url">https://relay.example.com([^<]+)<', minted.text)
    assert url
    answer = await admin.post(url.group(1), data={"external_id": "C9", "email": "c@d.co"})
    assert answer.status_code == 422
    [failed] = await store.list_deliveries(outcome="failed")
    detail = await admin.get(f"/admin/deliveries/{failed.id}")
    assert "tier gold missing" in detail.text and "Replay" in detail.text
    replayed = await admin.post(
        f"/admin/deliveries/{failed.id}/replay", data={"csrf": token_in(detail.text)}
    )
    assert replayed.status_code == 303
    new = await admin.get(replayed.headers["location"])
    assert "replay_of" not in new.text and failed.id in new.text  # links back
    [ok] = await store.list_deliveries(outcome="ok")
    assert ok.replay_of == failed.id and route.call_count == 2


async def test_admin_is_off_without_a_password(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(make_settings())
    answer = await client.get("/admin/hooks")
    assert answer.status_code == 404 and "RELAY_ADMIN_PASSWORD" in answer.text


async def test_every_template_page_renders(admin: httpx.AsyncClient) -> None:
    await sign_in(admin)
    listing = await admin.get("/admin/templates")
    names = re.findall(r'href="/admin/templates/([^"]+)"', listing.text)
    assert len(names) == SHIPPED_TEMPLATES and "stripe/invoice.paid" in names
    for name in names:
        page = await admin.get(f"/admin/templates/{name}")
        assert page.status_code == 200, name
        assert ("stripe trigger" in page.text) is name.startswith("stripe/")


async def mint_in_console(
    admin: httpx.AsyncClient, label: str, tier: str = "base"
) -> httpx.Response:
    form = await admin.get("/admin/hooks/new?template=member-upsert")
    return await admin.post("/admin/hooks/new", data={
        "csrf": token_in(form.text), "template": "member-upsert", "label": label,
        # Not in the registry's (sorted) order: the hook's page must still show this URL.
        "param:tier_id": tier, "param:program_id": PROGRAM, "param:timezone": "UTC"})  # fmt: skip


async def test_every_hook_has_a_page_with_the_url_that_was_minted(
    admin: httpx.AsyncClient, store: Store, passkit: respx.MockRouter
) -> None:
    passkit.get(f"/members/member/externalId/{PROGRAM}/C1").mock(return_value=httpx.Response(404))
    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m1"}))
    await sign_in(admin)
    answer = await mint_in_console(admin, "HubSpot new contact")
    [hook] = await store.list_hooks()
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/hooks/{hook.id}?minted=1"
    first = await admin.get(answer.headers["location"])
    assert first.status_code == 200 and "Hook created" in first.text
    url = re.search(r'id="minted-url">([^<]+)<', first.text).group(1)  # type: ignore[union-attr]
    # Reloading the page the POST redirected to mints nothing.
    for _ in range(3):
        assert (await admin.get(answer.headers["location"])).status_code == 200
    assert len(await store.list_hooks()) == 1

    # A delivery through the URL shows on the hook's page.
    sent = await admin.post(url.removeprefix("https://relay.example.com"),
                            data={"external_id": "C1", "email": "a@b.co"})  # fmt: skip
    assert sent.status_code == 200, sent.text

    listing = await admin.get("/admin/hooks")
    assert f'href="/admin/hooks/{hook.id}"><b>HubSpot new contact</b></a>' in listing.text
    assert url not in listing.text  # the list links to the page; the URL is only on it
    again = await admin.get(f"/admin/hooks/{hook.id}")
    assert again.status_code == 200 and "Hook created" not in again.text
    assert f'id="minted-url">{url}<' in again.text  # signed again: the very same URL
    assert "Webhooks by Zapier" in again.text and "HTTP › Make a request" in again.text
    assert f'<a href="{url}">Open its test page</a>' in again.text
    [delivery] = await store.list_deliveries(hook_id=hook.id)
    assert f'href="/admin/deliveries/{delivery.id}"' in again.text
    assert (await admin.get("/admin/hooks/hk_nosuchhook")).status_code == 404

    # Once revoked, the page says so and no longer offers the URL.
    csrf = token_in(again.text)
    await admin.post(f"/admin/hooks/{hook.id}/revoke", data={"csrf": csrf})
    revoked = await admin.get(f"/admin/hooks/{hook.id}")
    assert "This hook was revoked" in revoked.text and "no longer works" in revoked.text
    assert url not in revoked.text


async def test_a_label_an_active_hook_has_is_refused(
    admin: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(admin)
    assert (await mint_in_console(admin, "Front desk")).status_code == 303
    refused = await mint_in_console(admin, " front desk ", tier="gold")
    assert refused.status_code == 422
    [hook] = await store.list_hooks()
    assert ("Another hook (“Enrol or update a member”) is already labelled “front desk”: "
            "choose another label") in refused.text  # fmt: skip
    assert hook.id not in refused.text  # named by what it does, not by its id
    assert (await mint_in_console(admin, "Front desk, gold", tier="gold")).status_code == 303
    assert (await mint_in_console(admin, "")).status_code == 303  # no label: no clash
    assert (await mint_in_console(admin, "")).status_code == 303
    # A revoked hook's label is free again.
    csrf = token_in((await admin.get("/admin/hooks")).text)
    await admin.post(f"/admin/hooks/{hook.id}/revoke", data={"csrf": csrf})
    assert (await mint_in_console(admin, "Front desk")).status_code == 303
    assert len(await store.list_hooks()) == 5


async def test_favicon_and_overview_words(admin: httpx.AsyncClient) -> None:
    icon = await admin.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    await sign_in(admin)
    overview = await admin.get("/admin/")
    assert '<link rel="icon" href="data:image/svg+xml,' in overview.text
    assert "Mint a hook</a> to get started" in overview.text  # no hook yet
    assert ">succeeded</span> and" in overview.text and "handled" not in overview.text
    assert (await mint_in_console(admin, "First")).status_code == 303
    assert "to get started" not in (await admin.get("/admin/")).text

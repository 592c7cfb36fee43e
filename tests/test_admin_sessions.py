"""Admin sessions on real servers (uvicorn on loopback, `relay serve` in its own process, SQLite
files): a signed-out cookie stays dead wherever it is replayed, in every process sharing the
database, and a new admin password refuses every old cookie. Each request here is a fresh
httpx call carrying the cookie by hand, as a copied cookie would travel."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from relay.admin.session import MAX_AGE
from relay.app import create_app
from relay.delivery.housekeeping import purge_expired
from relay.store import Store

from .conftest import make_settings
from .servers import relay_process, serve_in_thread
from .test_admin import PASSWORD, token_in

NEW_PASSWORD = "a different, newer admin password"


def admin_app(database: Path, password: str = PASSWORD) -> Starlette:
    return create_app(
        make_settings(DATABASE_URL=f"sqlite:///{database}", RELAY_ADMIN_PASSWORD=password)
    )


def sign_in(base: str, password: str = PASSWORD) -> str:
    """Sign in with a fresh client; the session cookie's value."""
    form = httpx.get(f"{base}/admin/login")
    answer = httpx.post(
        f"{base}/admin/login", data={"csrf": token_in(form.text), "password": password}
    )
    assert answer.status_code == 303, answer.text
    found = re.match(r"relay_admin=([^;]+);", answer.headers["set-cookie"])
    assert found
    return found.group(1)


def get(base: str, path: str, cookie: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"Cookie": f"relay_admin={cookie}"})


def post(base: str, path: str, cookie: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}{path}", data=data, headers={"Cookie": f"relay_admin={cookie}"})


def assert_signed_out(base: str, cookie: str, csrf: str) -> None:
    page = get(base, "/admin/hooks", cookie)
    assert page.status_code == 303, page.text
    assert page.headers["location"] == "/admin/login?next=/admin/hooks"
    form = {"csrf": csrf, "template": "member-lookup", "param:program_id": "p1", "label": "Stolen"}
    refused = post(base, "/admin/hooks/new", cookie, form)
    assert refused.status_code == 403 and "session has ended" in refused.text


def test_a_copied_cookie_dies_with_the_sign_out(tmp_path: Path) -> None:
    with serve_in_thread(admin_app(tmp_path / "relay.db"), lifespan="on") as base:
        cookie = sign_in(base)
        hooks = get(base, "/admin/hooks", cookie)
        assert hooks.status_code == 200
        csrf = token_in(hooks.text)
        copy = cookie  # what a thief, a proxy log or a second tab still holds

        out = post(base, "/admin/logout", cookie, {"csrf": csrf})
        assert out.status_code == 303 and 'relay_admin=""' in out.headers["set-cookie"]
        notice = httpx.get(base + out.headers["location"])
        assert "You are signed out." in notice.text

        assert_signed_out(base, copy, csrf)
        assert post(base, "/admin/logout", copy, {"csrf": csrf}).status_code == 403

        fresh = sign_in(base)
        assert fresh != copy
        page = get(base, "/admin/hooks", fresh)
        assert page.status_code == 200 and "Stolen" not in page.text


def test_a_sign_out_counts_at_once_in_every_process(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", "RELAY_ADMIN_PASSWORD": PASSWORD}
    other = relay_process(env, log=tmp_path / "relay.log").start()
    try:
        with serve_in_thread(admin_app(database), lifespan="on") as here:
            for signs_in, signs_out in ((other.url, here), (here, other.url)):
                cookie = sign_in(signs_in)
                page = get(signs_out, "/admin/hooks", cookie)  # one console, two processes
                assert page.status_code == 200
                csrf = token_in(page.text)
                assert post(signs_out, "/admin/logout", cookie, {"csrf": csrf}).status_code == 303
                assert_signed_out(signs_in, cookie, csrf)  # no wait: the next request knows
    finally:
        other.stop()


def test_a_new_admin_password_refuses_every_old_cookie(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    with serve_in_thread(admin_app(database), lifespan="on") as base:
        cookie = sign_in(base)
        csrf = token_in(get(base, "/admin/hooks", cookie).text)
    # Restarted with RELAY_ADMIN_PASSWORD changed; nobody signed out, the database is the same.
    with serve_in_thread(admin_app(database, NEW_PASSWORD), lifespan="on") as base:
        assert_signed_out(base, cookie, csrf)
        form = httpx.get(f"{base}/admin/login")
        old = httpx.post(
            f"{base}/admin/login", data={"csrf": token_in(form.text), "password": PASSWORD}
        )
        assert old.status_code == 401
        assert get(base, "/admin/hooks", sign_in(base, NEW_PASSWORD)).status_code == 200


@pytest.mark.anyio
async def test_retention_forgets_ended_sessions_once_their_cookies_expired(store: Store) -> None:
    now = 1_800_000_000.0
    await store.end_admin_session("old", now - MAX_AGE - 1)
    await store.end_admin_session("recent", now - MAX_AGE + 60)
    await purge_expired(store, make_settings(), now)
    assert not await store.admin_session_ended("old")
    assert await store.admin_session_ended("recent"), "its cookie may still be out there"

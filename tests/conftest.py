"""Shared fixtures: settings from a dict, a respx-backed PassKit, and the app over ASGI.

The app is driven with `httpx.AsyncClient(transport=httpx.ASGITransport(app))` rather than
Starlette's TestClient (see docs/testing.md): no lifespan is needed because the factory builds
the PassKit client itself.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import respx
from starlette.applications import Starlette

from relay.access.tokens import Hook, HookSigner
from relay.app import create_app
from relay.settings import Settings, load_settings
from relay.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
# Every template the repository ships: what the relay must load, one for one.
SHIPPED_TEMPLATES = len(list((ROOT / "templates").rglob("*.json.j2")))
SAMPLES = Path(__file__).resolve().parent / "samples"
API = "https://api.passkit.test"
SECRET_KEY = "test-secret-key-0123456789abcdef"
PASSKIT_KEY = "pk-test-key"
PASSKIT_SECRET = "pk-test-secret-value"
FROZEN_NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)

BASE_ENV = {
    "RELAY_SECRET_KEY": SECRET_KEY,
    "PASSKIT_API_KEY": PASSKIT_KEY,
    "PASSKIT_API_SECRET": PASSKIT_SECRET,
    "PASSKIT_API_URL": API,
    "RELAY_PUBLIC_URL": "https://relay.example.com",
    "RELAY_TEMPLATES": str(ROOT / "templates"),
    "DATABASE_URL": "sqlite:///:memory:",  # one private database per app
    # Tests drive PassKit (respx, the sandbox) at machine speed; tests/test_outbound_rate.py
    # turns PassKit's rate on where it is the point.
    "PASSKIT_RATE_LIMIT": "off",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(**overrides: str) -> Settings:
    return load_settings({**BASE_ENV, **overrides}, cwd=ROOT)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def passkit() -> respx.MockRouter:
    """A fake PassKit: tests add routes and inspect `route.calls.last.request`."""
    return respx.MockRouter(base_url=API, assert_all_called=False)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store in a file of the test's own (test_store.py runs both backends itself)."""
    opened = await open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def make_client(
    passkit: respx.MockRouter,
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    apps: list[Starlette] = []

    def build(settings: Settings | None = None, **options: Any) -> httpx.AsyncClient:
        app = create_app(
            settings or make_settings(),
            transport=httpx.MockTransport(passkit.async_handler),
            clock=lambda: FROZEN_NOW,
            **options,
        )
        apps.append(app)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://relay.example.com"
        )

    yield build
    for app in apps:  # no lifespan over ASGITransport: close what the app opened
        await app.state.services.store.close()


@pytest.fixture
async def relay_client(
    make_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as client:
        yield client


def mint(template: str, hook_id: str = "hk_test000001", **params: str) -> str:
    """The path of a freshly minted hook URL."""
    token = HookSigner([SECRET_KEY]).mint(Hook(id=hook_id, template=template, params=params))
    return f"/hooks/{token}"


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    def part(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    header, claims, signature = token.split(".")
    return json.loads(part(header)), json.loads(part(claims)), part(signature)


# -- databases: SQLite always, PostgreSQL from RELAY_TEST_DATABASE_URL --------------------------


def postgres_url() -> str:
    url = os.environ.get("RELAY_TEST_DATABASE_URL", "").strip()
    if not url:
        reason = "PostgreSQL tests need RELAY_TEST_DATABASE_URL (scripts/ci-postgres sets it up)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason + "; in CI they must run, not skip")
        pytest.skip(reason)
    return url


def with_search_path(url: str, schema: str) -> str:
    """The URL with libpq's `options` making `schema` the first (and only) schema searched."""
    option = quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    import psycopg

    url = postgres_url()
    schema = "test_" + secrets.token_hex(6)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


pytest_plugins = ["tests.servers"]  # the `sandbox` fixture

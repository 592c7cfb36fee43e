"""What the relay keeps: secret-shaped values and personal data, searched for byte by byte.

A real `relay serve` process (stdout and stderr captured to a file, SQLite in the test's folder)
calls the PassKit sandbox with deliveries that carry secrets and a person's details, succeeding
and failing in every way a field can: then the database files, the captured output and every
admin page are searched for each of those values.

- `RELAY_LOG_PAYLOADS=off`: none of them anywhere.
- `on`: the person only in the delivery log's payload columns (what arrived, what was sent,
  PassKit's answer), redacted and sealed (never in clear in the files: tests/test_privacy.py
  goes further), shown by the console; secrets nowhere at all.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay.sandbox import DEMO_PROGRAM_ID, State

from .conftest import mint
from .servers import relay_process
from .test_admin import PASSWORD, token_in
from .test_stripe import STRIPE, WHSEC, sample, signed

MEMBER = {"program_id": DEMO_PROGRAM_ID, "tier_id": "base", "country": "GB"}
HOOK_TOKEN = mint("member-upsert", **MEMBER).rsplit("/", 1)[1]  # a working credential
SECRETS = [
    HOOK_TOKEN,
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2lnbmF0dXJlLXZhbHVl",
    "leaky-bearer-token-9f8e7d",  # sent as "Bearer leaky-bearer-token-9f8e7d"
]
PERSONAL = ["Marabel", "Quistorp", "marabel.quistorp@example.com", "2079460461", "Díaz"]
PAYLOAD_COLUMNS = {"request", "passkit_request", "passkit_response"}


def deliveries(relay: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(what, fields) for deliveries that succeed and fail while carrying the values above."""
    person = {"first_name": "Marabel", "last_name": "Quistorp", "mobile": "020 7946 0461",
              "email": "marabel.quistorp@example.com"}  # fmt: skip
    secrets = {"meta_note": SECRETS[0], "meta_signing": SECRETS[1], "meta_jwt": SECRETS[2],
               "meta_auth": f"Bearer {SECRETS[3]}"}  # fmt: skip
    upsert = mint("member-upsert", **MEMBER)
    yield upsert, {"external_id": "LEAK-1", **person, **secrets, "idempotency_key": "leak-1"}
    yield upsert, {"external_id": "LEAK-1", **person, "points": "12"}  # an update
    yield upsert, {"external_id": "LEAK-2", **person, "email": "Marabel Quistorp <marabel.q@ex>"}
    yield upsert, {"external_id": "LEAK-3", **person, "points": SECRETS[0]}
    yield upsert, {"external_id": "LEAK-4", **person, "mobile": "+44 20 7946 0461 Marabel"}
    yield upsert, {"external_id": "LEAK-5", **person, "birthday": f"Quistorp {SECRETS[2]}"}
    yield upsert, {"external_id": "LEAK-6", "email": person["email"], "tier": "Marabel-tier"}
    lookup = mint("member-lookup", program_id=DEMO_PROGRAM_ID)
    yield lookup, {"external_id": "LEAK-1", "idempotency_key": "leak-lookup"}
    earn = mint("member-points-earn", program_id=DEMO_PROGRAM_ID)
    yield earn, {"external_id": "LEAK-1", "points": "5", "idempotency_key": "leak-earn"}
    yield earn, {"external_id": "Quistorp-404", "points": "5", "notes": "Marabel"}
    enrol = mint("member-enrol", **MEMBER)
    yield enrol, {"external_id": "LEAK-1", **person}  # already exists: PassKit's own words
    yield upsert, {"external_id": "LEAK-7", **person, "meta_zap": f"{relay}/hooks/{HOOK_TOKEN}"}
    for odd in ("/", "//hooks/", "/Hooks/", "/hooks//", "/api/hooks/"):  # the access log's path
        yield odd + HOOK_TOKEN, {"external_id": "LEAK-8"}


@pytest.fixture(params=["off", "on"])
def run(request: pytest.FixtureRequest, sandbox: tuple[str, State], tmp_path: Path) -> Iterator[
        tuple[str, Path, Path, list[str]]]:  # fmt: skip
    """A relay that has handled every delivery above and a signed Stripe event: yields the
    setting, its folder, its captured output and the HTML of every admin page."""
    log = tmp_path / "relay.log"
    server = relay_process({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "PASSKIT_API_URL": sandbox[0], "PASSKIT_PASS_URL": f"{sandbox[0]}/pass",
        "RELAY_ADMIN_PASSWORD": PASSWORD, "RELAY_LOG_PAYLOADS": request.param,
        "STRIPE_WEBHOOK_SECRET": WHSEC,
    }, log)  # fmt: skip
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = []
            for hook, fields in deliveries(server.url):
                statuses.append(client.post(hook, data=fields).status_code)
            body = sample("checkout.session.completed")
            statuses.append(client.post(STRIPE, content=body, headers=signed(body)).status_code)
            assert 200 in statuses and 422 in statuses and 404 in statuses, statuses
            pages = admin_pages(client)
    finally:
        server.stop()
    yield request.param, tmp_path, log, pages


def admin_pages(client: httpx.Client) -> list[str]:
    form = client.get("/admin/login")
    signed_in = client.post("/admin/login", data={"csrf": token_in(form.text),
                                                  "password": PASSWORD})  # fmt: skip
    assert signed_in.status_code in (200, 303)
    paths = ["/admin/", "/admin/hooks", "/admin/templates", "/admin/deliveries",
             "/admin/deliveries?outcome=failed"]  # fmt: skip
    listing = client.get("/admin/deliveries").text
    paths += sorted(set(re.findall(r'href="(/admin/deliveries/dl_[0-9a-f]+)"', listing)))
    assert len(paths) > 12, "the deliveries list links every delivery"
    pages = []
    for path in paths:
        page = client.get(path)
        assert page.status_code == 200, path
        pages.append(page.text)
    return pages


def found_in(data: bytes, values: list[str]) -> list[str]:
    return [v for v in values if v.encode() in data or json.dumps(v)[1:-1].encode() in data]


def test_nothing_secret_or_personal_is_kept_beyond_the_payload_columns(
    run: tuple[str, Path, Path, list[str]],
) -> None:
    setting, folder, log, pages = run
    output = log.read_bytes()
    assert b"error=invalid_field" in output  # the log did record the failures
    assert found_in(output, SECRETS + PERSONAL) == []
    admin = "\n".join(pages).encode()
    assert found_in(admin, SECRETS) == []
    files = b"".join(p.read_bytes() for p in folder.glob("relay.db*"))
    assert found_in(files, SECRETS) == []
    assert found_in(files, PERSONAL) == []  # on or off: nothing personal in clear at rest
    if setting == "off":
        assert found_in(admin, PERSONAL) == []
        return
    # On: the payload columns hold the person sealed, and the console opens them.
    assert "Marabel" in found_in(admin, PERSONAL)  # the search does find what is there
    with sqlite3.connect(folder / "relay.db") as db:
        # Sealed once a row: `request` holds every payload column (relay.store.personal.BUNDLE).
        for column in PAYLOAD_COLUMNS:
            stored = [v for (v,) in db.execute(f"SELECT {column} FROM deliveries") if v]
            assert all(v.startswith("sealed:") for v in stored), column
            assert stored or column != "request", column

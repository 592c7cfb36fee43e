"""Personal data at rest (issue 15): sealed, erasable, and rotatable.

A real relay (uvicorn, lifespan on) on the PassKit sandbox handles deliveries for three people
(two through hooks, one through a signed Stripe checkout): then the database, byte by byte
(SQLite's files) or table by table (PostgreSQL), holds none of their names or emails. `relay
erase` removes one person: a full dump then holds no trace of them, not even their blind index,
while the others remain. And a rotated key: old rows read, new rows use the new key, and
`relay reencrypt` lets the old key go.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from relay.app import create_app
from relay.commands.cli import main
from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.sealing import PREFIX, Sealer
from relay.settings import ConfigError
from relay.store import Completion, DeliveryRecord, PassKitEvent, open_store
from relay.store.queries import INSERT_DELIVERY, delivery_params
from relay.store.sql import SQLStore
from relay.stripe.samples import sample_event

from .conftest import BASE_ENV, ROOT, SECRET_KEY, make_settings, mint
from .servers import serve_in_thread
from .test_admin import PASSWORD, sign_in, token_in
from .test_stripe import WHSEC, signed

MEMBER = {"program_id": DEMO_PROGRAM_ID, "tier_id": "base"}
ORIANE = {"external_id": "PRIV-ORIANE-7", "first_name": "Oriane", "last_name": "Vasquez-Lindqvist",
          "email": "oriane.vl@example.com"}  # fmt: skip
TEODOR = {"external_id": "PRIV-TEODOR-3", "first_name": "Teodor", "last_name": "Brannigan",
          "email": "teodor.brannigan@example.com"}  # fmt: skip
SIGRUN = {"email": "sigrun.halvorsen@example.com", "name": "Sigrun Halvorsen"}
ORIANE_WORDS = ["Oriane", "Vasquez-Lindqvist", ORIANE["email"]]
OTHERS_WORDS = ["Teodor", "Brannigan", TEODOR["email"], "Halvorsen", SIGRUN["email"]]
SEALER = Sealer.from_secrets([SECRET_KEY])
pytestmark = pytest.mark.anyio


def deliver(relay: str) -> None:
    """Deliveries that succeed, replay, fail and come from Stripe, for the three people."""
    upsert = mint("member-upsert", **MEMBER)
    stripe = "/stripe/" + mint("stripe", **MEMBER).rsplit("/", 1)[1]
    with httpx.Client(base_url=relay, timeout=30) as client:
        keyed = {**ORIANE, "idempotency_key": "priv-1"}
        statuses = [client.post(upsert, data=keyed).status_code for _ in range(2)]
        statuses.append(client.post(upsert, data={**ORIANE, "points": "lots"}).status_code)
        statuses.append(client.post(upsert, data=TEODOR).status_code)
        event = sample_event("checkout.session.completed", customer="cus_PrivSigrun01",
                             email=SIGRUN["email"], name=SIGRUN["name"])  # fmt: skip
        body = json.dumps(event).encode()
        statuses.append(client.post(stripe, content=body, headers=signed(body, WHSEC)).status_code)
    assert statuses == [200, 200, 422, 200, 200], statuses


def found(data: bytes, words: list[str]) -> list[str]:
    return [w for w in words if w.encode() in data or json.dumps(w)[1:-1].encode() in data]


def dump(database_url: str) -> str:
    """Every row of every table as text: SQLite's .dump, or each PostgreSQL table's rows."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return "\n".join(db.iterdump())
    import psycopg

    with psycopg.connect(database_url) as db:
        tables = [row[0] for row in db.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")]  # fmt: skip
        assert "deliveries" in tables and "idempotency" in tables
        return "\n".join(str(row[0]) for table in tables
                         for row in db.execute(f"SELECT t::text FROM {table} t"))  # fmt: skip


def opened(text: str, sealer: Sealer = SEALER) -> str:
    """`text` with every sealed value in it opened (what the keys would reveal)."""
    tokens = [part.split("'")[0].split(",")[0].split(")")[0] for part in text.split(PREFIX)[1:]]
    return "\n".join(sealer.open(PREFIX + token) for token in tokens)


def environment(database_url: str, sandbox_url: str, **more: str) -> dict[str, str]:
    return {**BASE_ENV, "DATABASE_URL": database_url, "PASSKIT_API_URL": sandbox_url,
            "RELAY_TEMPLATES": str(ROOT / "templates"), **more}  # fmt: skip


@contextmanager
def relay_at(sandbox_url: str, database_url: str, **more: str) -> Iterator[str]:
    """The relay under uvicorn (lifespan on) on `database_url`, calling the sandbox."""
    settings = make_settings(PASSKIT_API_URL=sandbox_url, PASSKIT_PASS_URL=f"{sandbox_url}/pass",
                             DATABASE_URL=database_url, STRIPE_WEBHOOK_SECRET=WHSEC,
                             **more)  # fmt: skip
    with serve_in_thread(create_app(settings), lifespan="on") as url:
        yield url


async def test_no_name_or_email_in_clear_and_erase_leaves_no_trace(
    database_url: str, sandbox: tuple[str, State], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with relay_at(sandbox[0], database_url) as relay:
        deliver(relay)
        if database_url.startswith("sqlite"):  # while the relay runs: the WAL holds the news
            files = b"".join(p.read_bytes() for p in tmp_path.glob("relay.db*"))
            assert len(list(tmp_path.glob("relay.db*"))) == 3  # the db, -wal and -shm
            assert found(files, ORIANE_WORDS + OTHERS_WORDS) == []
    everything = dump(database_url)
    assert found(everything.encode(), ORIANE_WORDS + OTHERS_WORDS) == []
    clear = opened(everything)  # the search finds them once opened with the key
    assert found(clear.encode(), ORIANE_WORDS + OTHERS_WORDS) == ORIANE_WORDS + OTHERS_WORDS
    for index in SEALER.blinds(ORIANE["email"]) + SEALER.blinds(ORIANE["external_id"]):
        assert index in everything  # her rows are findable by her blind index
    assert any(m["externalId"] == ORIANE["external_id"] for m in sandbox[1].members.values())

    assert await asyncio.to_thread(main, ["erase", ORIANE["email"].upper(), "--passkit"],
                                   environment(database_url, sandbox[0])) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "Deliveries in the log: 3" in said and "Stored answers (idempotency): 1" in said, said
    assert f"Deleted member {ORIANE['external_id']} in program {DEMO_PROGRAM_ID}" in said, said
    assert not any(m["externalId"] == ORIANE["external_id"] for m in sandbox[1].members.values())

    after = dump(database_url)
    assert found(after.encode(), ORIANE_WORDS) == []
    assert found(opened(after).encode(), [*ORIANE_WORDS, ORIANE["external_id"]]) == []
    for index in SEALER.blinds(ORIANE["email"]) + SEALER.blinds(ORIANE["external_id"]):
        assert index not in after
    assert found(opened(after).encode(), OTHERS_WORDS) == OTHERS_WORDS  # the others remain


async def read_all(database_url: str, sealer: Sealer) -> list[Any]:
    store = await open_store(database_url, sealer=sealer)
    try:
        return [d.request for d in await store.list_deliveries(limit=100)]
    finally:
        await store.close()


async def test_a_rotated_key_reads_old_rows_seals_new_ones_and_reencrypt_lets_the_old_one_go(
    database_url: str, sandbox: tuple[str, State], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    upsert = mint("member-upsert", **MEMBER)
    with relay_at(sandbox[0], database_url, RELAY_ENCRYPTION_KEY=old) as relay:  # fmt: skip
        assert httpx.post(relay + upsert, data=ORIANE, timeout=30).status_code == 200
    rotated = f"{new},{old}"
    with relay_at(sandbox[0], database_url, RELAY_ENCRYPTION_KEY=rotated) as relay:  # fmt: skip
        assert httpx.post(relay + upsert, data=TEODOR, timeout=30).status_code == 200
    both = Sealer.from_secrets([SECRET_KEY], [new, old])
    only_new = Sealer.from_secrets([SECRET_KEY], [new])
    requests = await read_all(database_url, both)
    assert [r["first_name"] for r in requests] == ["Teodor", "Oriane"]  # old rows still read
    newest, oldest = await read_all(database_url, only_new)
    assert newest["first_name"] == "Teodor" and oldest is None  # the new key sealed the new row

    assert await asyncio.to_thread(main, ["reencrypt"], environment(
        database_url, sandbox[0], RELAY_ENCRYPTION_KEY=rotated)) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "Deliveries in the log: 1 re-sealed" in said, said
    requests = await read_all(database_url, only_new)  # the old key dropped
    assert [r["first_name"] for r in requests] == ["Teodor", "Oriane"]
    assert await asyncio.to_thread(main, ["reencrypt"], environment(
        database_url, sandbox[0], RELAY_ENCRYPTION_KEY=new)) == 0  # fmt: skip
    assert "Deliveries in the log: 0 re-sealed" in capsys.readouterr().out


async def test_the_console_erases_a_person_after_saying_what_goes(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    with relay_at(sandbox[0], database_url, RELAY_ADMIN_PASSWORD=PASSWORD) as relay:
        deliver(relay)
        async with httpx.AsyncClient(base_url=relay, timeout=30) as console:
            await sign_in(console)
            form = await console.get("/admin/erase")
            assert "Their email, external id or Stripe customer id" in form.text
            csrf = token_in(form.text)
            refused = await console.post("/admin/erase", data={"who": ORIANE["email"]})
            assert refused.status_code == 403  # no CSRF token: nothing happens
            asked = await console.post("/admin/erase", data={"csrf": csrf, "who": ORIANE["email"]})
            assert f"Erase {ORIANE['email']}?" in asked.text
            assert "The relay has 3 deliveries about this person" in asked.text
            before = (await console.get("/admin/deliveries")).text
            assert found(before.encode(), ORIANE_WORDS) != []  # the console shows her: not yet
            erased = await console.post("/admin/erase", data={
                "csrf": csrf, "who": ORIANE["email"], "confirmed": "yes"})  # fmt: skip
            assert erased.status_code == 303  # POST/redirect/GET: a reload erases nothing
            for _ in range(2):  # the result, then a reload of it: the same words
                done = await console.get(erased.headers["location"])
                assert f"<b>{ORIANE['email']}</b> is erased from the relay" in done.text
                assert "Deliveries in the log: 3" in done.text
            assert (await console.get("/admin/erase?done=forged")).status_code == 200
            listing = (await console.get("/admin/deliveries")).text
            assert found(listing.encode(), ORIANE_WORDS) == []
            assert "Teodor" in listing  # the others stay
            # A misspelt address (or the same one again) finds nothing: said in words, not
            # "erased: 0 records".
            posted = await console.post("/admin/erase", data={
                "csrf": csrf, "who": ORIANE["email"], "confirmed": "yes"})  # fmt: skip
            assert posted.status_code == 303
            again = await console.get(posted.headers["location"])
            assert "Nothing found for <b>" in again.text
            assert "check the spelling; nothing was erased" in again.text
            assert "is erased from the relay" not in again.text


async def test_forwarded_events_and_stored_answers_are_sealed_and_erased(database_url: str) -> None:
    store = await open_store(database_url, sealer=SEALER)
    try:
        body = {
            "event": "installed",
            "external_id": ORIANE["external_id"],
            "email": ORIANE["email"],
            "first_name": "Oriane",
            "last_name": "Vasquez-Lindqvist",
        }
        event = PassKitEvent("ev_priv1", "hk_events01", "installed", 1.0, "https://hooks.example/x",
                             body)  # fmt: skip
        assert await store.enqueue_event(event)
        claim = await store.claim("create", "k" * 64, 1.0, people=[ORIANE["external_id"]])
        assert await store.complete(claim, 200, json.dumps({"ok": True, "member_id": "m1"}))
        dumped = dump(database_url)
        assert found(dumped.encode(), ORIANE_WORDS) == []  # the event's body is sealed
        stored = await store.get_event("ev_priv1")
        assert stored is not None and stored.body == body  # and opens as it was
        replay = await store.claim("create", "k" * 64, 2.0)
        assert replay.done and json.loads(replay.body or "") == {"ok": True, "member_id": "m1"}
        erased = await store.erase_person(ORIANE["external_id"].lower())
        assert erased == {"deliveries": 0, "idempotency": 1, "passkit_events": 1}
        assert await store.get_event("ev_priv1") is None
    finally:
        await store.close()


async def test_a_delivery_is_sealed_once_and_rows_sealed_column_by_column_still_open(
    database_url: str,
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    rotated = Sealer.from_secrets([SECRET_KEY], [new_key, old_key])
    store = await open_store(database_url, sealer=Sealer.from_secrets([SECRET_KEY], [old_key]))
    assert isinstance(store, SQLStore)
    try:
        fields = {"email": ORIANE["email"], "first_name": "Oriane"}
        record = DeliveryRecord(
            at=1.0, source="hook", hook_id="hk_priv", template="member-enrol",
            operation="members.enrol", outcome="failed", status=409, latency_ms=3.0,
            request_id="req_1", request=fields, passkit_request={"json": {"x": "Oriane"}},
            passkit_response={"status": 409, "json": {"id": "m1"}},
            error_message="Oriane is enrolled already", error_hint="Vasquez-Lindqvist",
            people=(ORIANE["email"],),
        )  # fmt: skip
        opened = ("request", "passkit_request", "passkit_response", "error_message", "error_hint")
        # A row as sealed before: each column its own value (no person column, so erase has to
        # open and search it).
        old = delivery_params(replace(record, id="d_0000old"), None) | {"person": None}
        for column in opened:
            if old[column] is not None:
                old[column] = store.sealer.seal(old[column])  # type: ignore[union-attr]
        await store._write(INSERT_DELIVERY, old)
        sealer, calls = store.sealer, []
        assert sealer is not None
        for name in ("seal", "blind"):
            method = getattr(sealer, name)
            setattr(sealer, name, lambda v, m=method, n=name: calls.append(n) or m(v))
        claim = await store.claim("create", "k" * 64, 1.0)
        calls.clear()
        answer = Completion(claim, 200, '{"ok":true}', (ORIANE["email"],))
        new_id = await store.record_delivery(record, completions=[answer])
        # One seal for the row, one for the stored answer; the person's blind index once.
        assert sorted(calls) == ["blind", "seal", "seal"]
        rows = {row[0]: row[1:] for row in await store._read(
            "SELECT id, request, passkit_request, passkit_response, error_message, error_hint "
            "FROM deliveries", {})}  # fmt: skip
        assert rows[new_id][0].startswith(PREFIX) and rows[new_id][1:] == (None,) * 4, "once"
        assert all(value.startswith(PREFIX) for value in rows["d_0000old"])
        assert found(dump(database_url).encode(), ORIANE_WORDS) == []
        for delivery_id in (new_id, "d_0000old"):
            got = await store.get_delivery(delivery_id)
            assert got is not None
            assert [getattr(got, c) for c in opened] == [getattr(record, c) for c in opened]
        store.sealer = rotated  # `relay reencrypt` after a rotation: both kinds re-sealed
        assert (await store.reseal_all())["deliveries"] == 2
        store.sealer = Sealer.from_secrets([SECRET_KEY], [new_key])  # the old key gone
        for delivery_id in (new_id, "d_0000old"):
            got = await store.get_delivery(delivery_id)
            assert (
                got is not None and got.request == fields and got.error_hint == "Vasquez-Lindqvist"
            )
        erased = await store.erase_person(ORIANE["email"])
        assert (erased["deliveries"], erased["idempotency"]) == (2, 1)
        assert await store.list_deliveries() == []
    finally:
        await store.close()


def test_a_wrong_encryption_key_stops_the_start_saying_what_a_key_looks_like() -> None:
    good = Fernet.generate_key().decode()
    assert make_settings(RELAY_ENCRYPTION_KEY=f" {good} ,").encryption_keys[0].reveal() == good
    with pytest.raises(ConfigError) as refused:
        make_settings(RELAY_ENCRYPTION_KEY=f"{good},not-a-fernet-key")
    [problem] = refused.value.problems
    assert problem.startswith("RELAY_ENCRYPTION_KEY: each key") and "Fernet.generate_key" in problem
    assert "not-a-fernet-key" not in problem  # a key is never repeated back


def test_a_blind_index_is_the_hmac_every_stored_row_was_indexed_with():
    """Rows indexed before are found by the same index: a known answer pins it (HMAC-SHA256 of
    the normalised identifier under the key derived from the secret, first 32 hex digits)."""
    import hashlib
    import hmac

    from relay.sealing import derived_key

    sealer = Sealer.from_secrets(["s" * 32, "older-secret-key-0123"])
    for identifier in ("Ana@Example.com", "  ana@example.com ", "CRM 123", "Dïaz"):
        text = " ".join(identifier.split()).casefold().encode()
        expected = [
            hmac.new(derived_key(secret, b"passkit-relay: blind index"), text,
                     hashlib.sha256).hexdigest()[:32]
            for secret in ("s" * 32, "older-secret-key-0123")
        ]  # fmt: skip
        assert sealer.blinds(identifier) == expected
        assert sealer.blind(identifier) == expected[0]

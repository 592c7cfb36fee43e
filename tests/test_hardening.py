"""Regressions for issue 10: what a hostile sender, a bad network or a careless paste could do.

One test (or a few) per numbered item of the issue; where the item is about the server (timeouts,
a sender that hangs up, keep-alive after a 500) it runs on a real server on loopback. Items 2
(X-Forwarded-For), 6 (server timeouts) and sign-out/SIGTERM live in `test_serving.py` and
`test_admin_sessions.py`; the leak test in `test_leaks.py`; the fuzz suite in `test_fuzz.py`.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import respx

from relay.app import create_app
from relay.errors import InvalidField
from relay.forms import filters
from relay.forms.fields import FieldValue
from relay.sandbox import (
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    State,
)
from relay.store import Store

from .conftest import make_settings, mint
from .servers import relay_on_sandbox, relay_process, serve_in_thread
from .test_stripe import STRIPE, WHSEC, sample, signed

pytestmark = pytest.mark.anyio
MEMBER = {"program_id": DEMO_PROGRAM_ID, "tier_id": "base"}
TICKET = {"production_id": DEMO_PRODUCTION_ID, "venue_id": DEMO_VENUE_ID,
          "ticket_type_id": DEMO_TICKET_TYPE_ID}  # fmt: skip


def logged(database: Path, request_id: str) -> dict[str, Any]:
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM deliveries WHERE request_id = ?", (request_id,)).fetchone()
    assert row is not None, f"{request_id} is not in the delivery log"
    return dict(row)


# -- 1. long digit strings ------------------------------------------------------------------------


@pytest.mark.parametrize("convert", [filters.to_int, filters.to_float, filters.money])
def test_numeric_text_is_bounded_before_any_parsing(convert: Callable[..., Any]) -> None:
    assert convert(FieldValue("1" + "0" * 14, "n")) == 10**14  # long enough for any real one
    for text in ("9" * 51, "1" * 30_000 + "e5", "€" + "1," * 40 + "5"):
        began = time.perf_counter()
        with pytest.raises(InvalidField) as refused:
            convert(FieldValue(text, "n"))
        assert time.perf_counter() - began < 0.01
        assert refused.value.field == "n" and "too long" in refused.value.message


def test_money_past_any_real_amount_is_refused_not_a_500() -> None:
    assert filters.money(FieldValue("999,999,999,999.99", "price")) == 999_999_999_999.99
    with pytest.raises(InvalidField, match="too large"):
        filters.money(FieldValue("9" * 30, "price"))


def test_a_megabyte_of_digits_is_refused_at_once_and_the_worker_stays_free(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    digits = "9" * (1024 * 1024 - 200)
    with relay_on_sandbox(sandbox[0], tmp_path) as url, httpx.Client(base_url=url) as client:
        results: dict[str, float] = {}

        def health_meanwhile() -> None:
            began = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            results["healthz"] = time.perf_counter() - began

        checker = threading.Timer(0.05, health_meanwhile)
        checker.start()
        began = time.perf_counter()
        answer = client.post(mint("member-upsert", **MEMBER), data={
            "external_id": "N-1", "email": "ana@example.com", "points": digits})  # fmt: skip
        took = time.perf_counter() - began
        checker.join()
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["field"] == "points" and "too long to be a number" in error["message"]
        assert took < 0.5 and results["healthz"] < 0.5
        price = client.post(mint("ticket-issue", **TICKET), data={
            "ticket_number": "T-9", "event_start": "2026-12-24T19:00:00Z",
            "price": "9" * 30_000})  # fmt: skip
        assert price.status_code == 422 and price.json()["error"]["field"] == "price"
    assert not sandbox[1].members and not sandbox[1].tickets


# -- 3. lone surrogates ---------------------------------------------------------------------------


async def test_a_lone_surrogate_is_refused_naming_the_field_and_nothing_is_sent(
    make_client: Callable[..., httpx.AsyncClient], passkit: respx.MockRouter, store: Store
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    async with make_client(store=store) as client:
        for body, field in [
            (b'{"external_id": "S-1", "email": "a@b.co", "first_name": "Ana \\ud83d"}',
             "first_name"),
            (b'{"external_id": "S-1", "email": "a@b.co", "meta_\\udfff": "x"}', "meta_\ufffd"),
        ]:  # fmt: skip
            answer = await client.post(mint("member-upsert", **MEMBER), content=body,
                                       headers={"content-type": "application/json"})  # fmt: skip
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["field"] == field
            assert "broken character" in answer.json()["error"]["message"]
            logged = {d.request_id: d for d in await store.list_deliveries()}
            assert logged[answer.json()["request_id"]].status == 422
    assert not route.called


async def test_the_hook_pages_test_form_shows_a_broken_character_as_a_problem(
    relay_client: httpx.AsyncClient,
) -> None:
    answer = await relay_client.post(
        mint("member-upsert", **MEMBER) + "/try",
        content=b'{"external_id": "S-2", "email": "a@b.co", "first_name": "\\ud800"}',
        headers={"content-type": "application/json", "accept": "text/html"},
    )
    assert answer.status_code == 200 and "broken character" in answer.text


async def test_a_passkit_answer_with_a_surrogate_is_mended_answered_and_logged(
    make_client: Callable[..., httpx.AsyncClient], passkit: respx.MockRouter, store: Store
) -> None:
    passkit.post("/members/member").mock(return_value=httpx.Response(
        200, content=b'{"id": "m-1", "note": "\\ud800"}'))  # fmt: skip
    async with make_client(store=store) as client:
        answer = await client.post(mint("member-upsert", **MEMBER),
                                   data={"external_id": "S-3", "email": "a@b.co"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["result"]["note"] == "\ufffd"
    record = (await store.list_deliveries(limit=1))[0]
    assert record.outcome == "ok" and record.passkit_response["json"]["note"] == "\ufffd"


# -- 4. a create that timed out, then the documented replay --------------------------------------


def test_a_create_whose_answer_timed_out_is_recognised_by_its_replay(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    sandbox_url, state = sandbox
    with relay_on_sandbox(sandbox_url, tmp_path, PASSKIT_TIMEOUT="0.3") as url, \
            httpx.Client(base_url=url, timeout=10) as client:  # fmt: skip
        hook = mint("member-enrol", **MEMBER)
        fields = {"external_id": "T-1", "email": "ana@example.com", "idempotency_key": "zap-1"}
        client.post(f"{sandbox_url}/_sandbox/faults", json={"latency_ms": 1000})
        first = client.post(hook, data=fields)
        assert first.status_code == 504 and first.json()["error"]["code"] == "passkit_timeout"
        deadline = time.monotonic() + 5
        while not state.members and time.monotonic() < deadline:  # PassKit carries it out
            time.sleep(0.05)
        client.post(f"{sandbox_url}/_sandbox/faults", json={"latency_ms": 0})
        (member,) = state.members.values()

        replay = client.post(hook, data=fields)  # what the 504's hint tells the zap to do
        assert replay.status_code == 200, replay.text
        body = replay.json()
        assert body["ok"] is True and body["duplicate"] is True and body["id"] == member["id"]
        again = client.post(hook, data={**fields, "idempotency_key": "zap-2"})
        assert again.status_code == 200 and again.json()["id"] == member["id"]
        assert again.json()["duplicate"] is True
    assert len(state.members) == 1


# -- 5. what the idempotency table keeps ----------------------------------------------------------


async def test_a_replayed_answer_is_stored_without_personal_data(
    make_client: Callable[..., httpx.AsyncClient], passkit: respx.MockRouter, store: Store
) -> None:
    person = {"displayName": "Mara Quist", "emailAddress": "mara@example.com"}
    passkit.put("/members/member/points/earn").mock(return_value=httpx.Response(
        200, json={"id": "m-7", "points": 40, "person": person}))  # fmt: skip
    lookup = passkit.get(url__regex=r"/members/member/externalId/.*").mock(
        return_value=httpx.Response(200, json={"id": "m-7", "person": person}))  # fmt: skip
    async with make_client(store=store) as client:
        hook = mint("member-points-earn", program_id=DEMO_PROGRAM_ID)
        fields = {"external_id": "Q-1", "points": "30", "idempotency_key": "k-1"}
        first = await client.post(hook, data=fields)
        replay = await client.post(hook, data=fields)
        read = mint("member-lookup", program_id=DEMO_PROGRAM_ID)
        for _ in range(2):  # a read is not remembered: it reads again
            looked = await client.post(read, data={"external_id": "Q-1", "idempotency_key": "k"})
            assert looked.json()["duplicate"] is False
    assert first.json()["result"]["person"] == person
    assert replay.json()["duplicate"] is True and replay.json()["id"] == "m-7"
    assert replay.json()["result"] == {"id": "m-7", "points": 40}
    assert lookup.call_count == 2
    stored = getattr(store, "path", None)
    if stored:  # the SQLite file itself holds no trace of the person
        assert b"Mara" not in Path(stored).read_bytes()


# -- 7. other 500s --------------------------------------------------------------------------------


@pytest.fixture
def stripe_client(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(make_settings(STRIPE_WEBHOOK_SECRET=WHSEC), store=store)


async def test_a_stripe_body_that_is_not_utf8_is_a_400(stripe_client: httpx.AsyncClient) -> None:
    body = b'{"id": "evt_\xff\xfe"}'
    answer = await stripe_client.post(STRIPE, content=body, headers={
        "Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("depth", [20_000, 40])
async def test_a_signed_stripe_event_nested_too_deep_is_a_400(
    stripe_client: httpx.AsyncClient, depth: int
) -> None:
    event = json.loads(sample("invoice.paid"))
    event["data"]["object"]["metadata"] = "DEEP"
    body = json.dumps(event).replace('"DEEP"', "[" * depth + "]" * depth).encode()
    answer = await stripe_client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_body"
    assert "nests deeper" in answer.json()["error"]["message"]


async def test_stripe_and_hook_urls_posted_to_each_others_place_are_404s(
    stripe_client: httpx.AsyncClient,
) -> None:
    stripe_token = STRIPE.rsplit("/", 1)[1]
    for method in ("POST", "GET"):
        answer = await stripe_client.request(method, f"/hooks/{stripe_token}", data={"a": "b"})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "wrong_endpoint"
        assert "Stripe endpoint" in answer.json()["error"]["message"]
    hook_token = mint("member-upsert", **MEMBER).rsplit("/", 1)[1]
    body = sample("invoice.paid")
    answer = await stripe_client.post(f"/stripe/{hook_token}", content=body, headers=signed(body))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "wrong_endpoint"


async def test_a_hook_whose_template_was_removed_is_a_404(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(mint("member-renamed", **MEMBER), data={"a": "b"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "template_missing"


# -- 8. a sender that hangs up; keep-alive after a 500 --------------------------------------------


def test_a_sender_gone_mid_body_is_one_log_line_and_a_client_gone_delivery(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    server = relay_process({"DATABASE_URL": f"sqlite:///{database}"}, tmp_path / "relay.log")
    server.start()
    try:
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        for n in range(5):
            with socket.create_connection((host, port)) as sock:
                sock.sendall(
                    f"POST {mint('member-upsert', **MEMBER)} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: 5000\r\n\r\nexternal_id=G-{n}&email=".encode()
                )
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sqlite3.connect(database) as db:
                gone = db.execute(
                    "SELECT status, error_code FROM deliveries WHERE error_code = 'client_gone'"
                ).fetchall()
            if len(gone) == 5:
                break
            time.sleep(0.1)
        assert gone == [(499, "client_gone")] * 5
        log = server.output()
    finally:
        server.stop()
    assert "Traceback" not in log
    assert log.count("error=client_gone") == 5


def test_a_500_keeps_the_connection_and_carries_a_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'relay.db'}"))

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    app.state.services.relay.deliver = broken
    with serve_in_thread(app, lifespan="on") as url, caplog.at_level(logging.INFO, "relay"):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port)
        body = urlencode({"external_id": "B-1", "email": "a@b.co"})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", mint("member-upsert", **MEMBER), body, headers)
        first = connection.getresponse()
        answer = json.loads(first.read())
        sock = connection.sock
        assert first.status == 500 and answer["error"]["code"] == "internal_error"
        assert first.getheader("x-request-id") == answer["request_id"]
        assert first.getheader("connection") != "close"
        connection.request("GET", "/healthz")  # the same connection, still open
        second = connection.getresponse()
        assert second.status == 200 and connection.sock is sock
        second.read()
        connection.close()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "a bug" not in answer["error"]["message"]
    assert logged(tmp_path / "relay.db", answer["request_id"])["error_code"] == "internal_error"


# -- a fresh pair of eyes (review of the above) ---------------------------------------------------


def test_a_long_date_is_refused_before_any_regex_work() -> None:
    for convert in (filters.to_date, filters.to_datetime):
        began = time.perf_counter()
        with pytest.raises(InvalidField, match="too long"):
            convert(FieldValue("(" * 128_000, "birthday"))
        assert time.perf_counter() - began < 0.01


@pytest.mark.parametrize(
    "charset", ["base64", "hex", "zlib", "bz2", "uu", "quopri", "rot13", "punycode", "undefined"]
)
async def test_a_charset_that_is_no_character_set_is_read_as_utf8(
    relay_client: httpx.AsyncClient, charset: str
) -> None:
    hook = mint("member-upsert", **MEMBER)
    for content_type, body in [
        (f"application/json; charset={charset}", b'{"external_id": "C-1", "dry_run": "1"}'),
        (f"application/x-www-form-urlencoded; charset={charset}", b"external_id=C-1&dry_run=1"),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="x"'
         b"\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\nv\r\n--b--\r\n"),
    ]:  # fmt: skip
        answer = await relay_client.post(hook, content=body, headers={"content-type": content_type})
        assert answer.status_code in (200, 422), answer.text


async def test_nul_characters_are_refused_and_every_answer_logged(
    make_client: Callable[..., httpx.AsyncClient], database_url: str, passkit: respx.MockRouter
) -> None:
    """PostgreSQL text cannot hold U+0000: it must never reach a key, a field or the log."""
    from relay.store import open_store

    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    store = await open_store(database_url)
    try:
        async with make_client(store=store) as client:
            hook = mint("member-upsert", **MEMBER)
            answers = [
                await client.post(hook, content=body, headers={"content-type": kind})
                for kind, body in [
                    ("application/x-www-form-urlencoded", b"external_id=N1&a%00b=1"),
                    ("application/x-www-form-urlencoded", b"external_id=N%001&email=a@b.co"),
                    ("application/x-www-form-urlencoded",
                     b"external_id=N1&email=a@b.co&idempotency_key=k%00"),
                    ("application/json", b'{"external_id": "N1", "email": "a\\u0000@b.co"}'),
                ]
            ]  # fmt: skip
            assert [a.status_code for a in answers] == [422] * 4, [a.text for a in answers]
            logged = {d.request_id for d in await store.list_deliveries()}
            assert {a.json()["request_id"] for a in answers} <= logged
            for address in ("/admin/deliveries?hook=%00", f"{hook}?dry_run=%00"):
                assert (await client.get(address)).status_code == 400
    finally:
        await store.close()
    assert not route.called


async def test_head_on_a_hook_url_never_delivers(
    make_client: Callable[..., httpx.AsyncClient], passkit: respx.MockRouter, store: Store
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    async with make_client(store=store) as client:
        answer = await client.request("HEAD", mint("member-upsert", **MEMBER),
                                      data={"external_id": "H-1", "email": "a@b.co"})  # fmt: skip
    assert answer.status_code == 200 and not route.called
    assert await store.list_deliveries() == []


async def test_idempotency_keys_are_stored_as_digests_and_bounded(
    make_client: Callable[..., httpx.AsyncClient], passkit: respx.MockRouter, tmp_path: Path
) -> None:
    from relay.store import open_store

    passkit.post("/members/member").mock(return_value=httpx.Response(200, json={"id": "m"}))
    database = tmp_path / "keys.db"
    store = await open_store(f"sqlite:///{database}")
    try:  # payloads off: the delivery log keeps no external id, so any copy is the key's
        async with make_client(make_settings(RELAY_LOG_PAYLOADS="off"), store=store) as client:
            hook = mint("member-enrol", **MEMBER)
            fields = {"external_id": "mara.quist@example.com", "email": "a@b.co"}
            first = await client.post(hook, data={**fields, "idempotency_key": "sk_live_KEY17"})
            again = await client.post(hook, data={**fields, "idempotency_key": "sk_live_KEY17"})
            long = await client.post(hook, data={**fields, "idempotency_key": "k" * 256})
    finally:
        await store.close()
    assert first.status_code == 200 and again.json()["duplicate"] is True
    assert long.status_code == 400 and "255" in long.json()["error"]["message"]
    kept = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert b"sk_live_KEY17" not in kept and b"mara.quist@example.com" not in kept


def test_the_names_a_sender_used_are_masked_in_the_logged_message() -> None:
    from relay.errors import MissingFields

    error = MissingFields(["email"], ["external_id", "zeb.quark@example.org"])
    assert "zeb.quark@example.org" in error.as_dict()["message"]  # the sender sees them
    assert "zeb.quark" not in error.logged_message()


async def test_a_stripe_event_its_template_cannot_read_is_200_not_ok_not_retried(
    tmp_path: Path, make_client: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    (tmp_path / "stripe").mkdir()
    (tmp_path / "stripe" / "invoice.paid.json.j2").write_text(
        '{#---\noperation = "members.upsert"\nsummary = "test"\n[params]\nprogram_id = "p"\n'
        "---#}\n{{ object.lines.data[99].price.id|tojson }}\n"
    )
    client = make_client(make_settings(STRIPE_WEBHOOK_SECRET=WHSEC,
                                       RELAY_TEMPLATES=str(tmp_path)), store=store)  # fmt: skip
    body = sample("invoice.paid")
    answer = await client.post(STRIPE, content=body, headers=signed(body))
    assert answer.status_code == 200 and answer.json()["ok"] is False
    assert answer.json()["error"]["code"] == "template_error"
    [record] = await store.list_deliveries()
    assert record.outcome == "failed" and record.error_code == "template_error"

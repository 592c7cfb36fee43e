"""Property-based attack on the hook endpoint: arbitrary bodies under arbitrary content types.

The relay and the PassKit sandbox run as real servers on loopback, and every generated request
goes over HTTP to a real hook URL. Whatever arrives — form, JSON, multipart, text/plain, bytes
that are not UTF-8, lone surrogates, deep nesting, numbers of a thousand digits, 100,000 keys —
the promise is the same:

- the answer is a success or a clear 4xx in the relay's JSON error shape, never a 5xx;
- it comes within `ANSWER_WITHIN` seconds;
- it carries an `x-request-id`, and the delivery log holds that delivery (written before the
  answer, so it is there when the answer is).

CI runs Hypothesis derandomised (the same examples every run, see `conftest`-free profile below);
a local run explores new ones each time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.app import create_app
from relay.sandbox import (
    DEMO_CAMPAIGN_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_VENUE_ID,
    SandboxConfig,
    create_sandbox,
)

from .conftest import PASSKIT_KEY, PASSKIT_SECRET, make_settings, mint
from .servers import serve_in_thread

ANSWER_WITHIN = 0.5  # seconds, per request, on a 2-core CI machine
# A whole MiB crosses loopback and is read in ~0.1 s on an idle machine; the bound is there to
# catch work that grows faster than the body (the digits took seconds to hours), not a busy CI.
LARGE_WITHIN = 1.0

settings.register_profile(
    "relay",
    max_examples=300,
    deadline=None,  # the time limit is ours (ANSWER_WITHIN), measured around the HTTP call
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("CI", "").lower() not in ("", "0", "false"),
    database=None,
)
settings.load_profile("relay")

HOOKS = {
    "member-upsert": {"program_id": DEMO_PROGRAM_ID, "tier_id": "base", "country": "GB"},
    "member-points-earn": {"program_id": DEMO_PROGRAM_ID},
    "coupon-issue": {"campaign_id": DEMO_CAMPAIGN_ID, "offer_id": DEMO_OFFER_ID},
    "ticket-issue": {"production_id": DEMO_PRODUCTION_ID, "venue_id": DEMO_VENUE_ID,
                     "ticket_type_id": DEMO_TICKET_TYPE_ID},
}  # fmt: skip


@dataclass
class Relay:
    url: str
    database: Path
    client: httpx.Client

    def post(
        self, template: str, body: bytes, content_type: str | None, within: float = ANSWER_WITHIN
    ) -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        began = time.perf_counter()
        answer = self.client.post(mint(template, **HOOKS[template]), content=body,
                                  headers=headers)  # fmt: skip
        took = time.perf_counter() - began
        assert took < within, f"{template} took {took:.3f} s for {len(body):,} bytes"
        return answer

    def check(self, answer: httpx.Response) -> None:
        """A success or a clear 4xx, with a request id that the delivery log holds."""
        assert answer.status_code < 500, answer.text[:500]
        body = answer.json()
        if answer.status_code >= 400:
            assert body["ok"] is False
            error = body["error"]
            assert error["code"] and error["message"]
            assert "Traceback" not in error["message"]
        else:
            assert body["ok"] is True
        request_id = answer.headers["x-request-id"]
        assert body["request_id"] == request_id
        with sqlite3.connect(self.database) as db:
            logged = db.execute(
                "SELECT status FROM deliveries WHERE request_id = ?", (request_id,)
            ).fetchall()
        assert logged == [(answer.status_code,)], f"{request_id} missing from the delivery log"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    folder = tmp_path_factory.mktemp("fuzz")
    sandbox = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(sandbox) as sandbox_url:
        app = create_app(
            make_settings(
                PASSKIT_API_URL=sandbox_url,
                PASSKIT_PASS_URL=f"{sandbox_url}/pass",
                DATABASE_URL=f"sqlite:///{folder / 'relay.db'}",
                RELAY_RATE_LIMIT="off",
            )
        )
        with serve_in_thread(app, lifespan="on") as url, httpx.Client(base_url=url) as client:
            relay = Relay(url, folder / "relay.db", client)
            for template in HOOKS:  # warm up: first calls compile and connect
                relay.post(template, b"dry_run=1", "application/x-www-form-urlencoded")
            yield relay


# -- what a hostile or careless sender can put in a body ------------------------------------------

NAMES = st.sampled_from(
    ["external_id", "email", "first_name", "last_name", "points", "birthday", "mobile", "tier",
     "meta_note", "idempotency_key", "dry_run", "First Name", "E-Mail", "person__email", "",
     " ", "\ufeffemail", "a" * 300]
) | st.text(max_size=12)  # fmt: skip
BROKEN = st.sampled_from(["\ud800", "Ana\udfff", "\udbff\udbff", "\ud83d\ude00"])
NUMBERS = st.one_of(
    st.integers(min_value=1, max_value=60_000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=20_000).map(lambda n: "1," * n + "5"),
    st.integers(min_value=1, max_value=20_000).map(lambda n: "1" * n + "e" + "9" * n),
    st.sampled_from(["1e999", "-0", "NaN", "Infinity", "1.5", "12,50", "€12.50", "0x10", "½"]),
)
TEXTS = st.one_of(
    st.text(max_size=200),
    NUMBERS,
    BROKEN,
    st.sampled_from(["ana@example.com", "ana@@x", "1990-04-27", "31/02/2000", "+442079460958",
                     "sk_live_" + "a" * 24, "yes", "null", "[]", "{}"]),
)  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | TEXTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.dictionaries(NAMES, VALUES, max_size=10)
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/x-www-form-urlencoded", "text/plain",
     "multipart/form-data; boundary=fuzz", "application/json; charset=latin-1",
     "application/json; charset=utf-16", "application/xml", ";;;=", "text/html; charset=nope",
     "application/json; charset=base64", "text/plain; charset=undefined",
     "application/x-www-form-urlencoded; charset=punycode", "multipart/form-data; boundary=fuzz;"
     " charset=rot13"]
)  # fmt: skip


def as_json(fields: object) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes, exactly as a broken step would.
    return json.dumps(fields, ensure_ascii=True).encode()


def as_form(fields: dict[str, object]) -> bytes:
    pairs = [(k, v) for k, value in fields.items()
             for v in (value if isinstance(value, list) else [value])]  # fmt: skip
    pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs]
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()


def as_multipart(fields: dict[str, object]) -> bytes:
    parts = [
        b'--fuzz\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (k.encode(errors="surrogatepass"), str(v).encode(errors="surrogatepass"))
        for k, v in fields.items()
    ]
    return b"".join(parts) + b"--fuzz--\r\n"


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


BODIES = st.one_of(
    FIELDS.map(as_json),
    FIELDS.map(as_form),
    FIELDS.map(as_multipart),
    st.binary(max_size=2_000),
    FIELDS.map(lambda f: as_json(f)[:-1] + b'\xff"}'),  # a byte that is not UTF-8
    st.tuples(st.integers(1, 100_000), st.sampled_from(["array", "object"])).map(
        lambda t: nested(*t)
    ),
)


@given(template=st.sampled_from(sorted(HOOKS)), body=BODIES, content_type=CONTENT_TYPES)
def test_any_body_gets_a_clear_answer_in_time_and_is_logged(
    relay: Relay, template: str, body: bytes, content_type: str | None
) -> None:
    relay.check(relay.post(template, body, content_type))


# A valid record with one field made hostile, so every filter and PassKit call is reached.
VALID = {
    "member-upsert": {"email": "ana@example.com", "first_name": "Ana", "points": "10"},
    "ticket-issue": {"event_start": "2026-12-24T19:00:00Z", "price": "12.50", "email": "a@b.co"},
}
HOSTILE_FIELDS = {
    "member-upsert": ["email", "first_name", "last_name", "display_name", "mobile", "birthday",
                      "tier", "points", "expiry", "meta_note", "external_id"],
    "ticket-issue": ["event_start", "price", "currency", "mobile", "seat", "meta_gate",
                     "ticket_number"],
}  # fmt: skip
ENCODINGS = {"json": (as_json, "application/json"),
             "form": (as_form, "application/x-www-form-urlencoded"),
             "multipart": (as_multipart, "multipart/form-data; boundary=fuzz")}  # fmt: skip


@given(data=st.data(), template=st.sampled_from(sorted(VALID)), encoding=st.sampled_from(
    sorted(ENCODINGS)), serial=st.integers(0, 10**9))  # fmt: skip
def test_any_value_in_any_field_gets_a_clear_answer(
    relay: Relay, data: st.DataObject, template: str, encoding: str, serial: int
) -> None:
    field = data.draw(st.sampled_from(HOSTILE_FIELDS[template]), label="field")
    value = data.draw(TEXTS | st.lists(TEXTS, max_size=3), label="value")
    key = "ticket_number" if template == "ticket-issue" else "external_id"
    fields: dict[str, object] = {key: f"F-{serial}", **VALID[template], field: value}
    encode, content_type = ENCODINGS[encoding]
    relay.check(relay.post(template, encode(fields), content_type))  # type: ignore[operator]


# -- the largest bodies the relay accepts, each built to be as costly as possible ------------------

MIB = 1024 * 1024


def _just_under(prefix: bytes, unit: bytes, suffix: bytes) -> bytes:
    return prefix + unit * ((MIB - len(prefix) - len(suffix)) // len(unit)) + suffix


LARGE = {
    "1 MiB of digits in points": _just_under(b"external_id=x&email=a@b.co&points=", b"9", b""),
    "1 MiB of digits as a JSON number": _just_under(b'{"points": ', b"9", b"}"),
    "1 MiB of digits as money (ticket price)": _just_under(
        b"ticket_number=T1&event_start=2026-12-01T19:00Z&price=", b"9", b""
    ),
    "100,000 keys": b"&".join(b"k%d=v" % i for i in range(100_000)),
    "80,000 keys in JSON": json.dumps({f"{i:x}": 1 for i in range(80_000)}).encode(),
    "one 1 MiB value": _just_under(b"external_id=x&email=a@b.co&first_name=", b"A", b""),
    "1 MiB email": _just_under(b"external_id=x&email=", b"a", b"@example.com"),
    "1 MiB phone": _just_under(b"external_id=x&email=a@b.co&mobile=", b"1 ", b""),
    "1 MiB date": _just_under(b"external_id=x&email=a@b.co&birthday=", b"1/", b"1990"),
    "1 MiB of ( in a date": _just_under(b"external_id=x&email=a@b.co&birthday=", b"(", b""),
    "JSON nested 500,000 deep": nested(500_000, "array")[: MIB - 2],
    "100,000 repeated keys": b"&".join([b"tag=x"] * 100_000),
    "surrogates everywhere": _just_under(b'{"first_name": "', b"\\ud800", b'"}'),
}


@pytest.mark.parametrize("name", sorted(LARGE))
def test_largest_costly_bodies_are_refused_or_served_in_time(relay: Relay, name: str) -> None:
    body = LARGE[name]
    assert len(body) <= MIB
    template = "ticket-issue" if "money" in name else "member-upsert"
    answer = relay.post(template, body, None, within=LARGE_WITHIN)
    relay.check(answer)
    assert relay.client.get("/healthz").status_code == 200

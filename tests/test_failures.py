"""Bad input and PassKit failures always end in the one friendly error shape, never a 500 or a
traceback, and user values can never break the JSON or run template code."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from relay.app import create_app
from relay.sandbox import ERROR_SHAPES, SandboxError
from relay.settings import ConfigError

from .conftest import make_settings, mint

pytestmark = pytest.mark.anyio

ENROL = mint("member-enrol", program_id="p1", tier_id="base")
GOOD = {"external_id": "CRM-1", "email": "ana@example.com"}


def assert_friendly(answer: httpx.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    body = answer.json()
    assert body["ok"] is False and body["request_id"].startswith("req_")
    error = body["error"]
    assert error["code"] == code
    assert len(error["message"]) < 250
    if error.get("field"):
        assert error["message"].startswith(error["field"])
    return error


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"email": "a@b.co",', "application/json", 400, "invalid_body"),
        (b'{"email": "a"\n "x": 1}', "application/json", 400, "invalid_body"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded", 400, "invalid_body"),
        (
            b"<member><email>a@b.co</email></member>",
            "application/xml",
            415,
            "unsupported_media_type",
        ),
        (b"[1, 2]", "application/json", 400, "invalid_body"),
        (b'[{"email": "a@b.co"}, {"email": "c@d.co"}]', "application/json", 400, "invalid_body"),
        (b'"just a string"', "application/json", 400, "invalid_body"),
        (b"null", "application/json", 400, "invalid_body"),
        (b"", "application/json", 422, "missing_field"),
        (b"--xyz\r\nbroken multipart", "multipart/form-data", 415, "unsupported_media_type"),
        (b"\x00\x01\x02\x03", "application/octet-stream", 415, "unsupported_media_type"),
    ],
)
async def test_broken_bodies_get_clear_errors(
    content: bytes, content_type: str, status: int, code: str, relay_client: httpx.AsyncClient
) -> None:
    answer = await relay_client.post(ENROL, content=content, headers={"Content-Type": content_type})
    error = assert_friendly(answer, status, code)
    assert error.get("hint")


async def test_json_errors_give_line_and_column(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(
        ENROL,
        content=b'{\n  "email": "a@b.co"\n  "external_id": "x"\n}',
        headers={"Content-Type": "application/json"},
    )
    error = assert_friendly(answer, 400, "invalid_body")
    assert "line 3" in error["message"] and "column 3" in error["message"]


async def test_body_over_the_limit_is_refused(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(ENROL, data={**GOOD, "notes": "x" * (1024 * 1024)})
    assert_friendly(answer, 413, "body_too_large")


async def test_all_missing_fields_are_named_together(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(ENROL, data={"first_name": "Ana", "last_name": "Diaz"})
    error = assert_friendly(answer, 422, "missing_field")
    assert error["field"] == "external_id"
    assert error["fields"] == ["external_id", "email"]
    assert error["message"] == (
        "external_id, email are required but were not sent (got: first_name, last_name)."
    )
    assert "Zapier" in error["hint"]


async def test_one_of_identity_fields(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(
        mint("member-delete", program_id="p1"), data={"email": "x@y.z"}
    )
    error = assert_friendly(answer, 422, "missing_field")
    assert error["message"].startswith("external_id or member_id is required")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("points", "ten", "ten"),
        ("email", "ana.example.com", "ana.example.com"),
        ("birthday", "31/02/1990", "31/02/1990"),
        ("expiry", "next tuesday-ish", "next tuesday"),
        ("mobile", "call me", "call me"),
    ],
)
async def test_invalid_values_name_their_field(
    field: str, value: str, needle: str, relay_client: httpx.AsyncClient
) -> None:
    answer = await relay_client.post(ENROL, data={**GOOD, field: value})
    error = assert_friendly(answer, 422, "invalid_field")
    assert error["field"] == field
    assert needle in error["message"]
    assert error["hint"]


INJECTIONS = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}boom{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    '", "tierId": "platinum", "x": "',
    "back\\slash \\u0041",
    "new\nline\r\nand\ttab",
    "</script><script>alert(1)</script>",
    'Zoë 🎉 O\'Brien "the best"',
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_values_arrive_as_literal_text(
    value: str, passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    route = passkit.post("/members/member").mock(
        return_value=httpx.Response(200, json={"id": "m1"})
    )
    answer = await relay_client.post(ENROL, json={**GOOD, "first_name": value, "meta_note": value})
    assert answer.status_code == 200, answer.text
    sent = json.loads(route.calls.last.request.content)
    assert sent["person"]["forename"] == value.strip()
    assert sent["metaData"] == {"note": value.strip()}
    assert sent["tierId"] == "base"


@pytest.mark.parametrize("shape", ERROR_SHAPES)  # each shape live PassKit answers in
@pytest.mark.parametrize(
    ("status", "grpc", "message", "relay_status", "code", "quoted"),
    [
        (400, 3, "tierId gold does not exist", 422, "passkit_rejected", True),
        (401, 16, "no jwt token provided", 502, "passkit_auth", False),
        (404, 5, "program not found", 404, "not_found", True),
        (409, 6, "member already exists", 409, "conflict", False),
    ],
)
async def test_passkit_answers_become_friendly_errors(
    shape: str,
    status: int,
    grpc: int,
    message: str,
    relay_status: int,
    code: str,
    quoted: bool,
    passkit: respx.MockRouter,
    relay_client: httpx.AsyncClient,
) -> None:
    body = SandboxError(grpc, message).body(shape)
    passkit.post("/members/member").mock(return_value=httpx.Response(status, json=body))
    # A failed enrol is looked up by its external id: here PassKit has no such member.
    passkit.get("/members/member/externalId/p1/CRM-1").mock(return_value=httpx.Response(404))
    answer = await relay_client.post(ENROL, data=GOOD)
    error = assert_friendly(answer, relay_status, code)
    if quoted:
        assert message in error["message"]
    assert error["hint"]
    if code == "conflict":
        assert "upsert" in error["hint"]


async def test_persistent_503_ends_in_503_with_retry_after(
    passkit: respx.MockRouter, make_client
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(503))
    # After the retries the relay looks the member up once (a 500 may mean "exists"): down too.
    lookup = passkit.get("/members/member/externalId/p1/CRM-1").mock(
        return_value=httpx.Response(503)
    )
    async with make_client(make_settings(RELAY_RETRY_BUDGET="0.6")) as client:
        answer = await client.post(ENROL, data=GOOD)
    assert_friendly(answer, 503, "passkit_unavailable")
    assert int(answer.headers["retry-after"]) >= 1
    assert route.call_count >= 2 and lookup.call_count >= 1


async def test_timeout_becomes_504(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    passkit.post("/members/member").mock(side_effect=httpx.ReadTimeout("slow"))
    answer = await relay_client.post(ENROL, data=GOOD)
    assert_friendly(answer, 504, "passkit_timeout")


async def test_bad_and_revoked_looking_tokens(relay_client: httpx.AsyncClient) -> None:
    answer = await relay_client.post(ENROL[:-3], data=GOOD)
    assert_friendly(answer, 401, "invalid_token")
    answer = await relay_client.post("/hooks/", data=GOOD)
    assert answer.status_code in (401, 404)
    assert answer.json()["ok"] is False


async def test_unknown_paths_and_methods_answer_json(relay_client: httpx.AsyncClient) -> None:
    assert_friendly(await relay_client.get("/nope"), 404, "not_found")
    assert_friendly(await relay_client.delete(ENROL), 405, "method_not_allowed")


def write_template(folder: Path, name: str, body: str, operation: str = "members.lookup") -> None:
    (folder / f"{name}.json.j2").write_text(
        f'{{#---\noperation = "{operation}"\nsummary = "test"\n[params]\n'
        f'program_id = "p"\n---#}}\n{body}\n'
    )


async def test_broken_template_at_runtime_names_template_and_line(
    tmp_path: Path, passkit: respx.MockRouter, make_client
) -> None:
    write_template(
        tmp_path,
        "broken",
        '{\n  "programId": {{ params.program_id|tojson }},\n'
        '  "externalId": {{ form.nope.deeper|tojson }}\n}',
    )
    async with make_client(make_settings(RELAY_TEMPLATES=str(tmp_path))) as client:
        answer = await client.post(mint("broken", program_id="p1"), data={"a": "b"})
    error = assert_friendly(answer, 500, "template_error")
    assert "broken" in error["message"] and "line 9" in error["message"]  # file line


async def test_template_writing_raw_text_is_caught_not_sent(
    tmp_path: Path, passkit: respx.MockRouter, make_client
) -> None:
    write_template(
        tmp_path, "quoted", '{"programId": "{{ params.program_id }}", "externalId": "x"}'
    )
    route = passkit.route()
    async with make_client(make_settings(RELAY_TEMPLATES=str(tmp_path))) as client:
        answer = await client.post(mint("quoted", program_id="p1"), data={"a": "b"})
    error = assert_friendly(answer, 500, "template_error")
    assert "tojson" in error["message"]
    assert route.call_count == 0


def test_template_syntax_error_stops_the_boot(tmp_path: Path) -> None:
    write_template(tmp_path, "syntax", '{"programId": {{ params.program_id|tojson }')
    with pytest.raises(ConfigError) as err:
        create_app(make_settings(RELAY_TEMPLATES=str(tmp_path)))
    assert "syntax" in err.value.problems[0] and "line" in err.value.problems[0]


async def test_every_problem_is_listed_at_once(
    passkit: respx.MockRouter, relay_client: httpx.AsyncClient
) -> None:
    route = passkit.post("/members/member").mock(return_value=httpx.Response(200, json={}))
    hook = mint("member-upsert", program_id="p1", tier_id="base")
    answer = await relay_client.post(hook, data={
        "external_id": "C1", "email": "ana@example.com", "points": "lots", "birthday": "someday",
    })  # fmt: skip
    assert answer.status_code == 422 and not route.called
    body = answer.json()
    assert body["error"]["code"] == "invalid_field"  # today's error: the first problem
    problems = body["problems"]
    assert sorted(p["field"] for p in problems) == ["birthday", "points"]  # both, at once
    assert all(p["message"] and p["hint"] for p in problems)
    assert body["error"]["field"] == problems[0]["field"]
    # Missing fields and a bad value together: each missing one, and the bad one.
    answer = await relay_client.post(hook, data={"external_id": "C1", "points": "lots"})
    assert {p["field"] for p in answer.json()["problems"]} == {"email", "points"}
    assert answer.json()["error"]["code"] == "missing_field"
    # One problem: listed too, as the one entry.
    answer = await relay_client.post(hook, data={"external_id": "C1", "email": "x@y.co",
                                                 "points": "many"})  # fmt: skip
    assert [p["field"] for p in answer.json()["problems"]] == ["points"]

"""The `relay` command line: url, check and render as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli import main
from relay.tokens import HookSigner, token_from_url

from .conftest import BASE_ENV, SECRET_KEY


def run(capsys: pytest.CaptureFixture[str], *argv: str, env: dict[str, str] | None = None):
    try:
        code = main(list(argv), env=BASE_ENV if env is None else env)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_url_prints_a_working_url_last(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "url",
        "member-upsert",
        "--param",
        "program_id=p1",
        "--param",
        "tier_id=base",
        "--label",
        "HubSpot",
    )
    assert code == 0
    url = out.strip().splitlines()[-1]
    assert url.startswith("https://relay.example.com/hooks/")
    hook = HookSigner([SECRET_KEY]).verify(token_from_url(url))
    assert hook.template == "member-upsert"
    assert dict(hook.params) == {"program_id": "p1", "tier_id": "base"}
    assert "HubSpot" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("url", "no-such-template"), "member-upsert"),  # lists what exists
        (("url", "member-upsert", "--param", "program_id=p1"), "tier_id"),
        (("url", "member-lookup", "--param", "program_id=p1", "--param", "colour=red"), "colour"),
        (("url", "member-lookup", "--param", "oops"), "name=value"),
    ],
)
def test_url_refuses_with_a_reason(capsys: pytest.CaptureFixture[str], argv, needle) -> None:
    code, _, err = run(capsys, *argv)
    assert code != 0 and needle in err


def test_check_passes_and_fails_readably(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "check")
    assert code == 0 and "17 templates" in out
    (tmp_path / "bad.json.j2").write_text("{ no front matter }")
    code, out, _ = run(capsys, "check", env={"RELAY_TEMPLATES": str(tmp_path), "PORT": "x"})
    assert code == 1
    lines = out.splitlines()
    assert any("RELAY_SECRET_KEY" in line for line in lines)
    assert any("PORT" in line for line in lines)
    assert any("template bad" in line for line in lines)


def test_render_prints_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "render",
        "member-points-earn",
        "--param",
        "program_id=p1",
        "external_id=CRM-123",
        "points=25",
    )
    assert code == 0
    first, _, rest = out.partition("\n")
    assert first == "PUT /members/member/points/earn"
    assert json.loads(rest) == {"externalId": "CRM-123", "programId": "p1", "points": 25.0}


def test_render_shows_the_friendly_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "render",
        "member-enrol",
        "--param",
        "program_id=p1",
        "--param",
        "tier_id=base",
        "First Name=Ana",
    )
    assert code == 1
    error = json.loads(out)["error"]
    assert error["code"] == "missing_field" and "(got: first_name)" in error["message"]

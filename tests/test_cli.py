"""The `relay` command line: url, check and render as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.access.tokens import HookSigner, token_from_url
from relay.commands.cli import main
from relay.settings import display_url, load_settings

from .conftest import BASE_ENV, ROOT, SECRET_KEY, SHIPPED_TEMPLATES

PROGRAM = "3iGxtXJd7x9fU2yYWcdBvQ"  # minting checks the shape of PassKit ids: 22 characters


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
        f"program_id={PROGRAM}",
        "--param",
        "tier_id=base",
        "--param",
        "timezone=UTC",
        "--label",
        "HubSpot",
        "--offline",
    )
    assert code == 0
    url = out.strip().splitlines()[-1]
    assert url.startswith("https://relay.example.com/hooks/")
    hook = HookSigner([SECRET_KEY]).verify(token_from_url(url))
    assert hook.template == "member-upsert"
    assert dict(hook.params) == {"program_id": PROGRAM, "tier_id": "base", "timezone": "UTC",
                                 "v": "2"}  # fmt: skip
    assert "HubSpot" in out


def test_url_says_when_it_points_at_localhost(capsys: pytest.CaptureFixture[str]) -> None:
    mint = ("url", "member-lookup", "--param", f"program_id={PROGRAM}", "--offline")
    env = {k: v for k, v in BASE_ENV.items() if k != "RELAY_PUBLIC_URL"}
    code, out, err = run(capsys, *mint, env=env)
    assert code == 0 and out.strip().splitlines()[-1].startswith("http://localhost:8000/hooks/")
    assert "RELAY_PUBLIC_URL" in err and "Zapier and Make" in err
    code, out, err = run(capsys, *mint)  # RELAY_PUBLIC_URL set: nothing to say
    assert code == 0 and "note:" not in err


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
    assert code == 0 and f"{SHIPPED_TEMPLATES} templates" in out
    # Declared aliases are shown, so an operator knows `phone` reaches the pass as `mobile`.
    assert "ok: member-enrol reads phone, phone_number as mobile (hooks minted from v2 on)" in out
    (tmp_path / "bad.json.j2").write_text("{ no front matter }")
    code, out, _ = run(capsys, "check", env={"RELAY_TEMPLATES": str(tmp_path), "PORT": "x"})
    assert code == 1
    lines = out.splitlines()
    assert any("RELAY_SECRET_KEY" in line for line in lines)
    assert any("PORT" in line for line in lines)
    assert any("template bad" in line for line in lines)


def test_check_names_template_line_and_field_passkit_does_not_define(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = (ROOT / "templates" / "ticket-issue.json.j2").read_text()
    assert '"gate": {{' in source
    sent = source.replace('"gate": {{', '"entrance": {{ form.gate|tojson }}, "gate": {{', 1)
    (tmp_path / "ticket-issue.json.j2").write_text(sent)
    line = next(n for n, text in enumerate(sent.splitlines(), 1) if '"entrance"' in text)
    code, out, _ = run(capsys, "check", env={"RELAY_TEMPLATES": str(tmp_path)})
    assert code == 1
    assert (f"problem: template ticket-issue line {line}: sends seatInfo.entrance, a field "
            "PassKit does not define for tickets.issue") in out  # fmt: skip


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


def test_minted_hooks_are_listed_and_revoked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**BASE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    code, out, _ = run(capsys, "hooks", env=env)
    assert code == 0 and "No hooks yet" in out
    urls = []
    for label in ("HubSpot", "Shopify"):
        code, out, _ = run(capsys, "url", "member-lookup", "--param", f"program_id={PROGRAM}",
                           "--label", label, "--offline", env=env)  # fmt: skip
        urls.append(out.strip().splitlines()[-1])
    hook_ids = [HookSigner([SECRET_KEY]).verify(token_from_url(u)).id for u in urls]
    code, out, _ = run(capsys, "hooks", env=env)
    assert all(h in out for h in hook_ids) and "HubSpot" in out and f"program_id={PROGRAM}" in out
    assert out.count("active") == 2

    code, out, _ = run(capsys, "revoke", hook_ids[0], env=env)
    assert code == 0 and f"revoked {hook_ids[0]}" in out
    code, out, _ = run(capsys, "revoke", urls[1], env=env)  # by URL, as pasted from Zapier
    assert code == 0 and f"revoked {hook_ids[1]}" in out
    code, out, _ = run(capsys, "revoke", urls[1], env=env)
    assert "already revoked" in out
    code, out, _ = run(capsys, "hooks", env=env)
    assert out.count("revoked") == 2


def test_revoke_refuses_what_it_cannot_find(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**BASE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    code, _, err = run(capsys, "revoke", "hk_0000000000", env=env)
    assert code == 1 and "pass its URL" in err
    code, _, err = run(capsys, "revoke", "https://relay.example.com/hooks/forged.token", env=env)
    assert code == 1 and "not valid" in err


def test_migrate_creates_the_schema_or_says_why_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**BASE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    code, out, _ = run(capsys, "migrate", env=env)
    assert code == 0 and "up to date" in out and (tmp_path / "relay.db").exists()
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'missing' / 'relay.db'}"
    code, out, err = run(capsys, "migrate", env=env)
    assert code == 1 and "cannot open the database" in err


def test_database_passwords_are_masked_for_display() -> None:
    shown = display_url("postgres://relay:hunter2@db.example.com:5432/relay")
    assert shown == "postgres://relay:***@db.example.com:5432/relay"
    assert display_url("sqlite:///relay.db") == "sqlite:///relay.db"
    settings = load_settings({**BASE_ENV, "DATABASE_URL": "postgres://u:hunter2@h/d"})
    assert "hunter2" not in repr(settings)


def test_url_stripe_mints_the_stripe_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "url", "stripe", "--param", "program_id=p1")
    assert code == 1 and "tier_id" in err
    params = ["--offline", "--param", f"program_id={PROGRAM}", "--param", "tier_id=base"]
    code, out, _ = run(capsys, "url", "stripe", *params, "--param", "tier_for_price=price_1=gold")
    url = out.strip().splitlines()[-1]
    assert code == 0 and url.startswith("https://relay.example.com/stripe/")
    hook = HookSigner([SECRET_KEY]).verify(token_from_url(url))
    assert hook.template == "stripe" and hook.params["tier_for_price"] == "price_1=gold"
    code, _, err = run(capsys, "url", "stripe/invoice.paid", "--param", "program_id=p1")
    assert code == 1 and "no template" in err

"""`relay demo` walked as the README walks it: its banner's curl and its `relay stripe-sample`
command, run as printed, issue passes the sandbox shows; a busy port is said before any URL."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import free_port

ENV = {"PATH": "/usr/bin:/bin"}  # no PassKit account, no secrets: the demo makes its own


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A running `relay demo`: its base URL and its banner's lines."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not re.fullmatch(r"http://\S+/hooks/\S+", lines[-1].strip()):
            line = process.stdout.readline()  # the hook URL is the banner's last line
            assert line, "relay demo exited:\n" + "".join(lines)
            lines.append(line)
        base = f"http://localhost:{port}"
        for _ in range(100):  # the banner is printed just before uvicorn binds the port
            try:
                httpx.get(base + "/healthz", timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        yield base, lines
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def sandbox_members(base: str) -> list[dict[str, Any]]:
    state = httpx.get(base + "/sandbox/_sandbox/state", timeout=10).json()
    members: list[dict[str, Any]] = state["members"]
    return members


def test_the_readme_demo_path_issues_passes_from_the_curl_and_the_stripe_sample(
    demo: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, lines = demo
    # The curl the banner prints, as httpx sends it.
    curl = next(i for i, line in enumerate(lines) if line.strip().startswith("curl -X POST"))
    url = shlex.split(lines[curl].strip().rstrip("\\"))[-1]
    fields = dict(pair.split("=", 1) for pair in shlex.split(lines[curl + 1])[1::2])
    answer = httpx.post(url, data=fields, timeout=30)
    assert answer.status_code == 200, answer.text
    card = httpx.get(answer.json()["pass_url"], timeout=10)  # works from any folder, no account
    assert card.status_code == 200 and fields["First Name"] in card.text
    assert "Sandbox Coffee Club" in card.text

    # The Stripe command, exactly as printed: this interpreter's `-m relay` (the demo runs as
    # `python -m relay` here; tests/test_demo_paste.py pastes it into a shell as printed).
    [command] = [line.strip() for line in lines if " stripe-sample " in line]
    printed = shlex.split(command)
    assert printed[:2] == [sys.executable, "-m"]
    argv = printed[2:]
    assert argv[:3] == ["relay", "stripe-sample", "checkout.session.completed"]
    assert re.fullmatch(r"http://localhost:\d+/stripe/\S+", argv[argv.index("--to") + 1])
    assert argv[argv.index("--secret") + 1].startswith("whsec_")
    ran = subprocess.run(
        [sys.executable, "-m", "relay", *argv[1:]],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "HTTP 200" in ran.stdout and '"ok": true' in ran.stdout
    stripe_pass = re.search(r'"pass_url": "([^"]+)"', ran.stdout)
    assert stripe_pass and httpx.get(stripe_pass.group(1), timeout=10).status_code == 200
    success = re.search(r"success page is (http://\S+/checkout/(cs_\S+))", ran.stdout)
    assert success, ran.stdout  # the Checkout session id the success page needs
    page = httpx.get(success.group(1), timeout=10)
    assert page.status_code == 200 and stripe_pass.group(1) in page.text
    members = sandbox_members(base)
    emails = sorted(m["person"]["emailAddress"] for m in members)
    assert emails == sorted([fields["email"], "ana@example.com"])
    stripe_member = next(m for m in members if m["externalId"].startswith("cus_"))
    assert stripe_member["tierId"] == "base" and stripe_member["person"]["displayName"]

    # invoice.paid pays the demo's mapped price: a new subscriber joins gold.
    paid = subprocess.run(
        [sys.executable, "-m", "relay", "stripe-sample", "invoice.paid", *argv[3:],
         "--email", "bo@example.com", "--name", "Bo Berg"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert paid.returncode == 0, paid.stdout + paid.stderr
    [bo] = [m for m in sandbox_members(base) if m["person"]["emailAddress"] == "bo@example.com"]
    assert bo["tierId"] == "gold"


def test_a_wrong_secret_is_said_and_exits_1(demo: tuple[str, list[str]], tmp_path: Path) -> None:
    _, lines = demo
    [command] = [line.strip() for line in lines if " stripe-sample " in line]
    argv = shlex.split(command)[2:]  # `python -m` relay …
    argv[argv.index("--secret") + 1] = "whsec_not_the_demos"
    ran = subprocess.run(
        [sys.executable, "-m", "relay", *argv[1:]],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 1 and "HTTP 400" in ran.stdout and "invalid_signature" in ran.stdout


def test_a_busy_port_is_said_before_any_url(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "relay", "demo", "--port", str(port)],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert ran.returncode == 1
    assert ran.stderr.strip() == f"port {port} is in use: relay demo --port {port + 10}"
    assert "http://" not in ran.stdout + ran.stderr


def test_the_demo_says_its_program_and_tier_ids_as_its_sandbox_has_them(
    demo: tuple[str, list[str]],
) -> None:
    base, lines = demo
    state = httpx.get(base + "/sandbox/_sandbox/state", timeout=10).json()
    [program_line] = [line for line in lines if line.strip().startswith("Program ")]
    [tier_line] = [line for line in lines if line.strip().startswith("Tiers ")]
    program_id = program_line.split("program_id")[1].strip()
    program = next(p for p in state["programs"] if p["id"] == program_id)
    assert program["name"] in program_line  # "Sandbox Coffee Club", by name and id
    tiers = {t["id"] for t in state["tiers"] if t["programId"] == program_id}
    assert set(tier_line.split("tier_id")[1].strip().split(", ")) == tiers


def caught(base: str, event: str, external_id: str) -> dict[str, Any]:
    """The event the demo's stand-in Catch Hook received, waiting up to 10 s for it."""
    for _ in range(100):
        for each in httpx.get(base + "/demo/catch?format=json", timeout=10).json():
            if each.get("event") == event and each.get("external_id") == external_id:
                return dict(each)
        time.sleep(0.1)
    raise AssertionError(f"no {event} for {external_id} reached {base}/demo/catch")


def test_the_demo_shows_passkit_events_coming_back_to_a_zap(demo: tuple[str, list[str]]) -> None:
    base, lines = demo
    assert any(line.strip().endswith("/demo/catch") for line in lines)  # the banner says where
    hook = lines[-1].strip()
    issued = httpx.post(hook, data={"external_id": "CRM-77", "email": "ida@example.com",
                                    "First Name": "Ida"}, timeout=30)  # fmt: skip
    assert issued.status_code == 200, issued.text
    created = caught(base, "created", "CRM-77")
    assert created["first_name"] == "Ida" and created["email"] == "ida@example.com"

    # The pass card's wallet button plays the phone: PassKit's "installed" reaches the zap.
    card_url = issued.json()["pass_url"]
    card = httpx.get(card_url, timeout=10)
    assert "Add to a wallet" in card.text
    pressed = httpx.post(card_url + "/wallet", data={"event": "installed"}, timeout=30,
                         follow_redirects=True)  # fmt: skip
    assert pressed.status_code == 200 and "Sent “installed” to the relay" in pressed.text
    installed = caught(base, "installed", "CRM-77")
    assert installed["pass_id"] == created["pass_id"] and installed["event_id"]
    page = httpx.get(base + "/demo/catch", timeout=10).text
    assert "installed" in page and "CRM-77" in page

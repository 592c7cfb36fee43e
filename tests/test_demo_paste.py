"""What the demo prints works when pasted: `scripts/demo`'s banner commands run in a new shell
whose PATH has no .venv (relay.commands.demo.relay_command), and `scripts/relay` runs the
relay from any folder."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay.commands.demo import relay_command

from .conftest import ROOT
from .processes import free_port

BARE = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}  # no .venv on it


@pytest.fixture
def banner(tmp_path: Path) -> Iterator[list[str]]:
    """`scripts/demo` started as the README says, from a shell without the venv on PATH."""
    port = free_port()
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "demo"), "--port", str(port)], cwd=tmp_path, env=BARE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not re.fullmatch(r"http://\S+/hooks/\S+", lines[-1].strip()):
            line = process.stdout.readline()
            assert line, "scripts/demo exited:\n" + "".join(lines)
            lines.append(line)
        for _ in range(100):
            try:
                httpx.get(f"http://localhost:{port}/healthz", timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        yield lines
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def commands(lines: list[str]) -> list[str]:
    """Each command the banner shows indented, joined over its `\\` continuations."""
    found: list[str] = []
    joining = False
    for line in lines:
        text = line.strip()
        if joining:
            found[-1] = found[-1].rstrip("\\") + " " + text
        elif line.startswith("  ") and re.match(r"(curl|\S*relay|\S*python\S*) ", text):
            found.append(text)
        joining = bool(found) and found[-1].endswith("\\")
    return found


def test_every_banner_command_runs_pasted_into_a_shell_without_the_venv(
    banner: list[str], tmp_path: Path
) -> None:
    pasted = commands(banner)
    assert any(c.startswith("curl ") for c in pasted)
    [stripe] = [c for c in pasted if " stripe-sample " in c]
    assert not stripe.startswith("relay ")  # `relay` is not on this PATH: its full path is
    for command in pasted:
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=BARE,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert ran.returncode == 0, f"{command}\n{ran.stdout}{ran.stderr}"
        assert "command not found" not in ran.stderr
        assert '"ok": true' in ran.stdout.replace('"ok":true', '"ok": true'), ran.stdout


def test_the_command_is_relay_only_when_the_path_finds_this_relay(tmp_path: Path) -> None:
    program = tmp_path / "venv" / "bin" / "relay"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    assert relay_command(str(program), "/usr/bin/python3", str(program)) == ["relay"]
    assert relay_command(str(program), "/usr/bin/python3", "") == [str(program)]
    assert relay_command(str(program), "/usr/bin/python3", "/elsewhere/relay") == [str(program)]
    assert relay_command("-m", "/v/bin/python", "") == ["/v/bin/python", "-m", "relay"]


def test_scripts_relay_runs_from_any_folder_without_the_venv(tmp_path: Path) -> None:
    launcher = str(ROOT / "scripts" / "relay")
    ran = subprocess.run([launcher, "events-sample", "--help"], cwd=tmp_path, env=BARE,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "HOOK_URL_OR_ID" in ran.stdout


def test_stripe_sample_help_lists_every_event_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    from relay.commands.cli import main
    from relay.stripe.samples import SAMPLES

    with pytest.raises(SystemExit):
        main(["stripe-sample", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert all(name in said for name in SAMPLES) and len(SAMPLES) == 4

"""requirements.txt is a lock: `pip install -r requirements.txt` into an empty venv (as Heroku's
buildpack and the Dockerfile do) installs nothing the file does not pin, at the version it pins
(scripts/lock-requirements writes it from pyproject.toml; its --check resolves without
installing, ~15 s, and .ci/run runs it).

Offline: pip reads this machine's package indexes (file:// in pip's configuration) and its
cache. The install takes ~50 s on a shared 2-core machine; it is the suite's one such test."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from lock_requirements import normalise, pinned


def test_a_fresh_install_brings_only_what_requirements_txt_pins(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    started = time.monotonic()
    installed = subprocess.run([*pip, "install", "--quiet", "--no-compile", "-r",
                                "requirements.txt"],
                               cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    took = time.monotonic() - started
    frozen = subprocess.run([*pip, "freeze", "--all", "--exclude", "passkit-relay"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    want = pinned((ROOT / "requirements.txt").read_text())
    got = {normalise(name): version for name, _, version in
           (line.partition("==") for line in frozen.splitlines() if "==" in line)}  # fmt: skip
    got.pop("pip", None)  # pip installs itself into the venv (--without-pip kept it out so far)
    unpinned = {name: version for name, version in got.items() if want.get(name) != version}
    assert unpinned == {}, f"installed but not pinned (or at another version): {unpinned}"
    assert set(got) == set(want)  # and every pin is needed
    assert took < 120, f"the install took {took:.0f} s"

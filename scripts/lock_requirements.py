"""Write requirements.txt: pyproject.toml's runtime dependencies with every transitive package
pinned to one version, so a Heroku or Docker build installs exactly what was tested.

    scripts/lock-requirements             regenerate the file, keeping the versions it pins
    scripts/lock-requirements --upgrade   regenerate it with the newest versions allowed
    scripts/lock-requirements --check     exit 1 when the file does not pin what pyproject.toml
                                          needs now (a dependency added or a pin dropped)

pip resolves the project as a fresh install would (`pip install --dry-run --ignore-installed
--report`, so nothing is installed and what is in this venv does not count) and the file lists
every package that install would bring, `name==version`, A-Z; its last line (`.`) installs the
relay itself, for Heroku's buildpack. tests/test_locked.py checks a real install into an empty
venv brings nothing the file does not pin.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "requirements.txt"
HEADER = """\
# Locked runtime dependencies: every package a fresh install of the relay brings, pinned
# (Heroku's Python buildpack and the Dockerfile install this file; scripts/bootstrap uses it as
# constraints). Generated from pyproject.toml by scripts/lock-requirements: do not edit by hand.
"""


def resolve(keep: dict[str, str]) -> dict[str, str]:
    """{name: version} of everything `pip install .` would install into an empty venv, the
    versions in `keep` kept where they still fit."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        constraints = Path(folder) / "keep.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in keep.items()))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
             "--report", str(report), "-c", str(constraints), str(ROOT)],
            check=True,
        )  # fmt: skip
        found = json.loads(report.read_text())
    pins = {}
    for item in found["install"]:
        meta = item["metadata"]
        if meta["name"] != "passkit-relay":
            pins[meta["name"]] = meta["version"]
    return pins


def render(pins: dict[str, str]) -> str:
    lines = [f"{name}=={pins[name]}" for name in sorted(pins, key=str.lower)]
    return HEADER + "\n".join(lines) + "\n.\n"


def pinned(text: str) -> dict[str, str]:
    """The `name==version` lines of a requirements file, by normalised name."""
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[normalise(name)] = version
    return pins


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a needed pin is missing")
    parser.add_argument("--upgrade", action="store_true", help="the newest versions allowed")
    args = parser.parse_args(argv)
    have = pinned(OUTPUT.read_text()) if OUTPUT.exists() else {}
    pins = resolve({} if args.upgrade or args.check else have)
    if args.check:
        missing = sorted(n for n in pins if normalise(n) not in have)
        if missing:
            print(f"requirements.txt does not pin {', '.join(missing)}: run "
                  "scripts/lock-requirements", file=sys.stderr)  # fmt: skip
            return 1
        print(f"requirements.txt pins all {len(pins)} packages a fresh install brings")
        return 0
    OUTPUT.write_text(render(pins))
    print(f"wrote {OUTPUT} ({len(pins)} packages pinned)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The README and the pages under docs/ hold together: no heading twice in one file (a section
pasted twice once went unnoticed for weeks), every relative link reaches a file that exists and,
with a #fragment, a heading in it (GitHub's anchors), and the reference pages name every
setting the relay reads and every command it has."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, …


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def headings(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in prose(text):
        if match := HEADING.match(line):
            found.append((number, match.group(2)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): the text as shown (link targets and
    emphasis marks gone), lower-cased, punctuation dropped, each space a hyphen."""
    shown = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("*", "")
    return re.sub(r"[^\w\- ]", "", shown.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, … as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in headings(page.read_text()):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def links(text: str) -> list[tuple[int, str]]:
    """Each link's target with its line, outside code blocks and code spans."""
    found = []
    for number, line in prose(text):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def test_the_docs_pages_exist_and_the_readme_is_a_front_door() -> None:
    assert len(PAGES) > 10, PAGES
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 350, "keep the README short: move reference to docs/"
    linked = {target.partition("#")[0] for _, target in links(readme)}
    for page in PAGES[1:]:  # every page is reachable from the front door
        assert f"docs/{page.name}" in linked, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_heading_appears_twice_in_one_file(page: Path) -> None:
    found = headings(page.read_text())
    assert found, f"{page.name} has no heading"
    seen: dict[str, int] = {}
    twice = []
    for number, heading in found:
        key = " ".join(heading.split()).casefold()
        if key in seen:
            twice.append(f"line {number}: {heading!r}, already at line {seen[key]}")
        seen.setdefault(key, number)
    assert not twice, f"{page.name} repeats a heading:\n" + "\n".join(twice)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_reaches_a_file_and_a_heading(page: Path) -> None:
    broken = []
    for number, target in links(page.read_text()):
        if not target or EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(f"line {number}: {target}: no file {path}")
        elif fragment and (goal.suffix != ".md" or fragment not in anchors(goal)):
            broken.append(f"line {number}: {target}: no heading #{fragment} in {goal.name}")
    assert not broken, f"{page.name} has broken links:\n" + "\n".join(broken)


def test_the_link_checker_reads_headings_and_links_as_github_does() -> None:
    assert slug("PassKit's rate") == "passkits-rate"
    assert slug("Docker: Render, Fly.io, Railway, a VM") == "docker-render-flyio-railway-a-vm"
    assert slug("Spent (`tier_for_spend`)") == "spent-tier_for_spend"
    assert slug("Pass events: `/_sandbox/webhook`") == "pass-events-_sandboxwebhook"
    text = "# A\n```\n# not a heading [x](nowhere.md)\n```\nSee [b](b.md#c) and `[d](e.md)`.\n"
    assert headings(text) == [(1, "A")]
    assert links(text) == [(5, "b.md#c")]


# -- the reference pages name everything the relay has -----------------------------------------


def settings_table() -> set[str]:
    """The names in the first column of docs/settings.md's table."""
    names: set[str] = set()
    for _, line in prose((ROOT / "docs" / "settings.md").read_text()):
        if line.startswith("|"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def test_every_setting_the_relay_reads_is_in_the_settings_table() -> None:
    set_by_the_host = {"DYNO"}  # Heroku sets it on a dyno; the settings say what it changes
    source = "\n".join(path.read_text() for path in (ROOT / "relay").rglob("*.py"))
    read = set(re.findall(r"\"((?:RELAY|PASSKIT|STRIPE)_[A-Z0-9_]+|DATABASE_URL|PORT|"
                          r"WEB_CONCURRENCY|DYNO)\"", source))  # fmt: skip
    assert len(read) > 20, read
    missing = sorted(read - set_by_the_host - settings_table())
    assert not missing, f"not in docs/settings.md's table: {missing}"


def test_every_relay_command_is_in_the_command_table() -> None:
    usage = subprocess.run([sys.executable, "-m", "relay", "--help"], capture_output=True,
                           text=True, timeout=60, check=True).stdout  # fmt: skip
    commands = re.findall(r"^ {4}([a-z][a-z-]*)(?= |$)", usage, re.M)  # one a line, indented
    assert len(commands) > 10, usage
    documented = (ROOT / "docs" / "commands.md").read_text()
    missing = [name for name in commands if f"| `relay {name}" not in documented]
    assert not missing, f"docs/commands.md does not document: {missing}"

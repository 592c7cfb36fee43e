"""Every `relay …` command the README and docs/ show is one `relay … --help` knows: the
subcommand exists and each --option it is shown with is one of that subcommand's."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from relay.commands.cli import build_parser

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPAN = re.compile(r"`((?:scripts/)?relay [^`\n]+)`")  # an inline code span
LINE = re.compile(r"^(?: {4,}|\t)(?:\$ )?((?:\S*/)?relay [^#\n]+)", re.M)  # an indented code line
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def shown(text: str) -> list[str]:
    commands = [m.group(1) for m in SPAN.finditer(text)]
    blocks = "\n".join(m.group(1) for m in FENCE.finditer(text))
    commands += [m.group(1) for m in LINE.finditer(text)]
    commands += [line.strip().removeprefix("$ ") for line in blocks.splitlines()
                 if re.match(r"\s*(\$ )?(\S*/)?relay ", line)]  # fmt: skip
    return [c.strip().rstrip("\\").strip() for c in commands]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def problems(command: str, known: dict[str, argparse.ArgumentParser]) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = words[1:]  # `relay` (or its path)
    if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
        return []  # prose such as "relay … takes": not a command
    if words[0] not in known:
        return [f"{command!r}: relay has no command {words[0]}"]
    options = {o for a in known[words[0]]._actions for o in a.option_strings}
    unknown = [w.split("=")[0] for w in words[1:] if w.startswith("--")]
    return [f"{command!r}: relay {words[0]} has no option {w}" for w in unknown if w not in options]


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_relay_command_in_the_docs_is_one_relay_knows(doc: object) -> None:
    known = subcommands()
    text = ROOT.joinpath(str(doc)).read_text()
    commands = shown(text)
    assert doc != ROOT / "README.md" or len(commands) >= 10  # the README shows many
    found = [p for command in commands for p in problems(command, known)]
    assert found == []


def test_the_check_catches_an_unknown_command_and_option() -> None:
    known = subcommands()
    text = "Run `relay mint-url x` or\n\n    relay url member-upsert --colour red\n"
    said = [p for command in shown(text) for p in problems(command, known)]
    assert len(said) == 2 and "no command mint-url" in said[0] and "--colour" in said[1]

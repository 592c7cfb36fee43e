"""The benchmark's headline: CPU per delivery, as a ratio to the floor proxy's CPU per request.

Throughput on a shared machine moves with whatever else runs; the CPU time the OS counts for a
process (user + system, every thread, every worker) per request it answered moves much less,
and its ratio to a bare proxy's, measured in the same run and taking turns with it, cancels most
of what is left (a slower or busier machine slows both). The guard compares that ratio with the
one kept in `cpu_budget.json`: more than `TOLERANCE` above it fails the run.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BUDGET = Path(__file__).with_name("cpu_budget.json")
TOLERANCE = 0.15  # the ratio may rise this much above the kept one before the run fails


class Served(Protocol):
    requests: int
    errors: int


class Measured(Protocol):
    def cpu_s(self) -> float: ...


@dataclass(frozen=True)
class Turn:
    cpu_us: float  # CPU per answered request, µs
    requests: int
    errors: int


def cpu_turn(server: Measured, load: Callable[[], Served]) -> tuple[Turn, Served]:
    """Runs `load` against `server` and divides the CPU the server used meanwhile by the
    requests it answered."""
    before = server.cpu_s()
    result = load()
    used = server.cpu_s() - before
    return Turn(used / max(1, result.requests) * 1e6, result.requests, result.errors), result


def headline(proxy_turns: list[Turn], relay_turns: list[Turn]) -> dict[str, Any]:
    """The JSON keys: medians over the rounds, the ratio the median of each round's ratio
    (a round is one proxy turn and the relay turn right after it)."""
    ratios = [r.cpu_us / p.cpu_us for p, r in zip(proxy_turns, relay_turns, strict=True)]
    return {
        "relay_cpu_us_per_delivery": statistics.median(t.cpu_us for t in relay_turns),
        "proxy_cpu_us_per_request": statistics.median(t.cpu_us for t in proxy_turns),
        "cpu_ratio_vs_proxy": statistics.median(ratios),
        "cpu_rounds": [
            {"proxy_us": p.cpu_us, "relay_us": r.cpu_us, "ratio": ratio,
             "relay_deliveries": r.requests, "relay_errors": r.errors}
            for p, r, ratio in zip(proxy_turns, relay_turns, ratios, strict=True)
        ],
    }  # fmt: skip


def kept_ratio(path: Path = BUDGET) -> float:
    return float(json.loads(path.read_text())["cpu_ratio_vs_proxy"])


def guard(ratio: float, kept: float, tolerance: float = TOLERANCE) -> str | None:
    """None when `ratio` is within `tolerance` above `kept`; otherwise the line that says so."""
    limit = kept * (1 + tolerance)
    if ratio <= limit:
        return None
    return (
        f"CPU GUARD FAILED: relay CPU per delivery is {ratio:.2f}x the bare proxy's CPU per "
        f"request, more than {tolerance:.0%} above the {kept:.2f}x kept in "
        f"{BUDGET.relative_to(BUDGET.parents[2])} (limit {limit:.2f}x). Find the new per-request "
        "work (scripts/bench --profile); raise the kept ratio only in a commit that says why."
    )

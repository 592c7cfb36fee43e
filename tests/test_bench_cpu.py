"""The benchmark's CPU guard and stage split (tests/bench/cpu.py, stages.py): the arithmetic
that decides whether CI fails, and the reading of /proc it rests on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench import cpu, stages
from tests.processes import tree_cpu_s


def test_the_guard_passes_up_to_15_percent_above_the_kept_ratio_and_fails_past_it() -> None:
    assert cpu.guard(4.0, 4.0) is None
    assert cpu.guard(4.6, 4.0) is None  # +15 %
    failure = cpu.guard(4.61, 4.0)
    assert failure is not None and failure.startswith("CPU GUARD FAILED")
    assert "4.61x" in failure and "4.00x" in failure and "cpu_budget.json" in failure


def test_the_kept_ratio_is_read_from_the_budget_file() -> None:
    assert 1 <= cpu.kept_ratio() <= 20


def test_the_headline_is_the_median_of_each_rounds_ratio() -> None:
    proxy = [cpu.Turn(100, 1000, 0), cpu.Turn(200, 1000, 0), cpu.Turn(100, 1000, 0)]
    relay = [cpu.Turn(400, 500, 0), cpu.Turn(600, 500, 0), cpu.Turn(900, 500, 0)]
    figures = cpu.headline(proxy, relay)
    assert figures["cpu_ratio_vs_proxy"] == 4.0  # ratios 4, 3, 9
    assert figures["relay_cpu_us_per_delivery"] == 600
    assert figures["proxy_cpu_us_per_request"] == 100


def test_cpu_of_a_process_tree_counts_a_busy_child() -> None:
    # The child spins 0.4 s but the test asks for 0.3: /proc counts user and system time in
    # whole clock ticks, each rounded down, so a 0.30 s spin can read as 0.29.
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(30)"])
    try:
        mine = tree_cpu_s(os.getpid())
        deadline = time.monotonic() + 20
        while tree_cpu_s(child.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree_cpu_s(child.pid) >= 0.3  # a CPU-bound 0.3 s, not the sleep after it
        assert tree_cpu_s(os.getpid()) >= mine + 0.3  # the parent's tree includes its child
    finally:
        child.kill()
        child.wait()


def frame(function: str, path: str) -> str:
    return f"{function} ({path}:12)"


def test_a_sample_counts_for_the_innermost_stage_passing_over_general_code() -> None:
    serve = [frame("run", "/x/uvicorn/server.py"), frame("__call__", "/w/relay/app.py")]
    parse = [*serve, frame("payload", "/w/relay/forms/payloads.py"),
             frame("loads", "/usr/lib/python3.11/json/__init__.py")]  # fmt: skip
    assert stages.stage_of(parse) == "parse"
    logged = [*serve, frame("info", "/usr/lib/python3.11/logging/__init__.py")]
    assert stages.stage_of(logged) == "middleware"
    loop = [frame("_run_once", "/usr/lib/python3.11/asyncio/base_events.py")]
    assert stages.stage_of(loop) == stages.SERVER
    raw = [";".join(parse) + " 3", ";".join(loop) + " 1"]
    assert stages.split(raw) == {"parse": 0.75, stages.SERVER: 0.25}


def test_the_in_process_bench_delivers_for_real_and_prints_the_cpu_of_each_run() -> None:
    """`python -m tests.bench.in_process`: every delivery answered 200 (it asserts so), one
    figure a run, in a plausible range for a relay's own work (not 0: something ran)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.in_process", "--runs", "2", "--deliveries", "150"],
        capture_output=True, text=True, check=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])["cpu_us_per_delivery"]
    assert len(figures) == 2
    assert all(50 < figure < 20_000 for figure in figures), figures

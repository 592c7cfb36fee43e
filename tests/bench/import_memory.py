"""`relay import` at scale: peak memory (RSS) and rows a second for the dry run and the real run
of a CSV of N members (default 50,000) against the PassKit sandbox in its own process, SQLite
as the database. Beside it the same at a tenth of the rows: memory that stays flat while the
file grows tenfold is the proof that rows are streamed, not held.

    scripts/bench-import [--rows 50000]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from relay.sandbox import DEMO_PROGRAM_ID  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret-0123456789"


def write_members(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["External ID", "Email", "First Name", "Last Name", "Points"])
        for n in range(rows):
            writer.writerow([f"GYM-{n:06d}", f"m{n}@example.com", "Member", f"No. {n}", n % 90])


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of one `relay` run, read from its own rusage."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - began, usage.ru_maxrss / 1024, process.returncode


def bench(rows: int, folder: Path, sandbox_url: str) -> list[str]:
    env = {**os.environ, "RELAY_SECRET_KEY": "bench-secret-key-0123456789abcdef",
           "PASSKIT_API_KEY": KEY, "PASSKIT_API_SECRET": SECRET, "PASSKIT_API_URL": sandbox_url,
           "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
           # The import's own cost; with PassKit's rate limit on, rows/s is that limit.
           "PASSKIT_RATE_LIMIT": os.environ.get("PASSKIT_RATE_LIMIT", "off")}  # fmt: skip
    relay = [sys.executable, "-m", "relay"]
    params = ["--param", f"program_id={DEMO_PROGRAM_ID}", "--param", "tier_id=base"]
    minted = subprocess.run([*relay, "url", "member-upsert", *params, "--offline"], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    hook_id = minted.stdout.split()[1].rstrip(":")
    members = folder / "members.csv"
    write_members(members, rows)
    lines = []
    for what, extra in (("dry run", ["--dry-run"]), ("import", [])):
        seconds, rss, code = measured([*relay, "import", str(members), "--hook", hook_id, *extra],
                                      env)  # fmt: skip
        assert code == 0, f"{what} of {rows} rows exited {code}"
        lines.append(f"{what:<8} {rows:>7,} rows  {seconds:7.1f} s  {rows / seconds:7,.0f} rows/s"
                     f"  peak RSS {rss:6.1f} MB")  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    env = {"PASSKIT_API_KEY": KEY, "PASSKIT_API_SECRET": SECRET}
    sandbox = ServerProcess([sys.executable, "-m", "relay", "sandbox", "--port", "{port}"], env,
                            "/_sandbox/state").start()  # fmt: skip
    try:
        print(f"relay import, SQLite, the PassKit sandbox on loopback ({os.cpu_count()} CPUs)")
        for rows in (max(1, args.rows // 10), args.rows):
            with tempfile.TemporaryDirectory(prefix="relay-bench-import-") as folder:
                for line in bench(rows, Path(folder), sandbox.url):
                    print(line, flush=True)
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

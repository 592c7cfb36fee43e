"""Load generators: wrk for closed-loop throughput, and an open-loop Python client for latency
at a fixed rate (wrk keeps a fixed number of connections busy, it cannot hold a rate)."""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

SCRIPT = Path(__file__).with_name("enrol.lua")


@dataclass(frozen=True)
class Throughput:
    rps: float
    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install wrk (Debian's package)")
    return found


def wrk(url: str, *, seconds: float, connections: int, prefix: str, mode: str, program: str,
        headers: dict[str, str] | None = None) -> Throughput:  # fmt: skip
    """Closed loop: `connections` connections, each sending its next request on an answer."""
    duration = f"-d{max(1, round(seconds))}s"
    argv = [wrk_path(), "-t1", f"-c{connections}", duration, "--timeout", "10s", "-s", str(SCRIPT)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv += [url, "--", prefix, mode, program]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return Throughput(rps, total, errors + (int(non2xx.group(1)) if non2xx else 0))


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    sent: int
    errors: int


async def open_loop(url: str, *, rate: float, seconds: float, mode: str, program: str,
                    prefix: str, headers: dict[str, str] | None = None) -> Latency:  # fmt: skip
    """Requests at a fixed rate whatever the answers' speed; each latency is measured from when
    the request was due, so a stall is not hidden by sending less (coordinated omission)."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(n: int, due: float) -> None:
            nonlocal errors
            ident = f"{prefix}-{n}"
            if mode == "json":
                body: str = (f'{{"programId":"{program}","tierId":"base","externalId":"{ident}",'
                             f'"person":{{"emailAddress":"{ident}@example.com"}}}}')  # fmt: skip
                kind = "application/json"
            else:
                body = f"external_id={ident}&email={ident}%40example.com&idempotency_key={ident}"
                kind = "application/x-www-form-urlencoded"
            try:
                async with session.post(url, data=body, headers={**(headers or {}),
                                        "Content-Type": kind}) as answer:  # fmt: skip
                    await answer.read()
                    if answer.status >= 300:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append((time.perf_counter() - due) * 1000)

        start = time.perf_counter() + 0.05
        tasks = []
        for n in range(total):
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return Latency(
        p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        sent=total,
        errors=errors,
    )

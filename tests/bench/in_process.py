"""The relay's own CPU per delivery with nothing else in the process: no sockets, no HTTP server,
no sandbox. For a step worth 1-5 %: a wrk round on this machine moves ±15 %, while these runs,
with only the relay's work in them, spread a few per cent on a quiet machine (compare medians
of alternated runs on a busy one).

The app is driven by direct ASGI calls (the bench's form post: a new member every request, keyed
by its own idempotency key), 64 at a time as wrk's connections would be, with PassKit an httpx
MockTransport answering each enrol with a new id; SQLite in a temporary folder. Printed: the
process's CPU µs per delivery for each of `--runs` runs of `--deliveries`, after a warm-up.

    python -m tests.bench.in_process [--runs 3] [--deliveries 4000]

Comparing two checkouts: run it in each, alternating, several times; what the MockTransport and
the direct calls cost is the same on both sides, so the difference is the relay's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from relay.sandbox import DEMO_PROGRAM_ID

ROOT = Path(__file__).resolve().parents[2]
CONCURRENT = 64
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-www-form-urlencoded")]


def hook_path(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "relay", "url", "member-enrol", "--param",
         f"program_id={DEMO_PROGRAM_ID}", "--param", "tier_id=base", "--param",
         "timezone=Europe/London", "--offline", "--base-url", "http://127.0.0.1:8000"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return "/" + out.stdout.strip().splitlines()[-1].split("/", 3)[3]


def passkit(request: httpx.Request) -> httpx.Response:
    if request.method == "POST" and request.url.path.endswith("/members/member"):
        return httpx.Response(200, json={"id": secrets.token_hex(11)})
    return httpx.Response(200, json={})


async def deliver(app: Any, path: str, body: bytes) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [*HEADERS, (b"content-length", b"%d" % len(body))],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}  # fmt: skip
    given = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the sender stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    assert status == [200], status


async def deliveries(app: Any, path: str, count: int) -> None:
    prefix = secrets.token_hex(4)
    numbers = iter(range(count))

    async def sender() -> None:
        for n in numbers:
            who = f"{prefix}-{n}"
            body = (f"external_id={who}&email={who}%40example.com&first_name=Bench"
                    f"&idempotency_key={who}").encode()  # fmt: skip
            await deliver(app, path, body)

    await asyncio.gather(*(sender() for _ in range(CONCURRENT)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=4000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    env = {**os.environ, "RELAY_SECRET_KEY": secrets.token_urlsafe(32),
           "PASSKIT_API_URL": "http://passkit.invalid", "PASSKIT_API_KEY": "bench",
           "PASSKIT_API_SECRET": secrets.token_urlsafe(24),
           "DATABASE_URL": f"sqlite:///{folder}/relay.db", "RELAY_RATE_LIMIT": "off",
           "PASSKIT_RATE_LIMIT": "off"}  # fmt: skip
    path = hook_path(env)
    os.environ.update(env)

    from relay.app import create_app
    from relay.settings import load_settings

    app = create_app(load_settings(os.environ), transport=httpx.MockTransport(passkit))

    async def measure() -> list[float]:
        async with app.router.lifespan_context(app):
            await deliveries(app, path, 1000)  # warm-up: caches, the first commits
            figures = []
            for _ in range(args.runs):
                began = time.process_time()
                await deliveries(app, path, args.deliveries)
                figures.append((time.process_time() - began) / args.deliveries * 1e6)
            return figures

    import uvloop  # what uvicorn runs the relay on

    print(json.dumps({"cpu_us_per_delivery": [round(f, 1) for f in uvloop.run(measure())]}))


if __name__ == "__main__":
    main()

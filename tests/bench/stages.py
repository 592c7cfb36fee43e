"""Where a delivery's CPU goes: `scripts/bench --profile` samples `relay serve` under wrk with
py-spy (every thread, idle ones left out) and groups the samples into stages.

Each sample is one stack. Read from its innermost frame outwards, the first frame that belongs
to a stage names the stage; frames of general-purpose code (asyncio, json, logging, the
standard library, Starlette's request objects) say nothing and are passed over, so `json.loads`
called while parsing counts as parsing, and a log line written by the access log as middleware.
A stack with no such frame is the server and its event loop (uvicorn, httptools, select).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# (stage, what a frame's file path contains), first match wins within a frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("middleware", ("relay/app.py", "relay/web/proxies.py", "relay/web/serving.py",
                    "starlette/middleware/", "starlette/_exception_handler.py")),
    ("parse", ("relay/forms/", "multipart/", "relay/web/endpoints.py:read_body",
               "relay/access/tokens.py")),
    ("render + validate", ("relay/delivery/templating.py", "relay/delivery/templatecheck.py",
                           "relay/passkit/contract.py", "relay/passkit/schema.py",
                           "relay/passkit/operations.py", "jinja2/", "jsonschema",
                           "fastjsonschema", "email_validator/")),
    ("PassKit call", ("relay/passkit/client.py", "relay/passkit/upstream.py",
                      "relay/passkit/outbound.py", "aiohttp/", "yarl/", "multidict/")),
    ("sealing, redaction, blind indexes", ("relay/sealing.py", "relay/redact.py",
                                           "cryptography/", "relay/store/personal.py",
                                           "relay/store/privacy.py")),
    ("journal + idempotency writes", ("relay/delivery/journal.py",
                                      "relay/delivery/idempotency.py", "relay/store/",
                                      "sqlite3/", "psycopg")),
    ("delivery glue (pipeline, endpoint, answer)", ("relay/delivery/", "relay/web/",
                                                    "relay/hooks/", "relay/access/",
                                                    "starlette/responses.py")),
    ("HTTP server, event loop", ("uvicorn/", "httptools/", "asyncio/", "anyio/", "selectors.py",
                                 "starlette/routing.py", "starlette/applications.py")),
)  # fmt: skip
SERVER = "HTTP server, event loop"
# A frame in py-spy's raw format: `function (path:line)`.
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
# Generic code: passed over on the way out from the innermost frame, even where a stage's
# pattern would match (asyncio/anyio only name a stage when nothing inner did).
PASS_OVER = (
    "asyncio/",
    "anyio/",
    "selectors.py",
    "json/",
    "logging/",
    "threading.py",
    "concurrent/",
    "contextlib.py",
    "typing.py",
    "abc.py",
    "functools.py",
)


def stage_of(frames: list[str]) -> str:
    """The stage of one stack, frames outermost first (py-spy's order)."""
    for frame in reversed(frames):
        match = FRAME.match(frame.strip())
        if not match:
            continue
        where = f"{match['path']}:{match['function']}"
        if any(generic in where for generic in PASS_OVER):
            continue
        for stage, marks in STAGES:
            if any(mark in where for mark in marks):
                return stage
    return SERVER


def split(raw: Iterable[str]) -> dict[str, float]:
    """Share of the samples each stage took, from py-spy's `--format raw` lines (`frame;frame;…
    count`), in STAGES' order; shares add up to 1."""
    counts: Counter[str] = Counter()
    for line in raw:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {stage: counts[stage] / total for stage, _ in STAGES if counts[stage]}


def rows(shares: dict[str, float], cpu_us: float) -> list[tuple[str, str, str]]:
    """The profile's table rows: each stage's share, and its µs of the CPU per delivery."""
    return [(f"profile: {stage}", f"{share:5.1%}  ~{share * cpu_us:4.0f} µs", "")
            for stage, share in shares.items()]  # fmt: skip

"""The benchmark's PostgreSQL rows: the relay on PostgreSQL with one worker and with two, and
what PassKit's rate limiter costs (its limit set far above what the run reaches, so it never
throttles: the figure is its bookkeeping, one `UPDATE … RETURNING` per PassKit call).

Runs on the database `RELAY_TEST_DATABASE_URL` names (`eval "$(scripts/ci-postgres)"`), in a
schema of its own dropped afterwards; without it the rows are skipped with a note.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

UNTHROTTLED = "100000"  # calls a second: far above any figure here, so the limiter never waits

# name, workers, PASSKIT_RATE_LIMIT
SETUPS = (("postgres", 1, "off"), ("postgres_limited", 1, UNTHROTTLED), ("postgres_2", 2, "off"))


def database_url() -> str | None:
    return os.environ.get("RELAY_TEST_DATABASE_URL", "").strip() or None


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """`url` with a new, empty schema first in its search path; dropped on the way out."""
    import psycopg

    schema = "bench_" + secrets.token_hex(4)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    option = quote(f"-csearch_path={schema}", safe="")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options={option}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def measure(url: str, run: Callable[[str, int, str], dict[str, Any]]) -> dict[str, Any]:
    """`run(database_url, workers, rate_limit)` for each setup, on one fresh schema."""
    with fresh_schema(url) as schema_url:
        return {name: run(schema_url, workers, limit) for name, workers, limit in SETUPS}


def rows(f: dict[str, Any], rate: int) -> list[tuple[str, str, str]]:
    """The table's rows for these figures (or the note saying why there are none)."""
    pg = f.get("postgres")
    if not pg:
        return [("7. PostgreSQL", "skipped: RELAY_TEST_DATABASE_URL is not set", "")]
    direct = f["latency"]["direct"]

    def latency(each: dict[str, Any]) -> str:
        return (f"p50 +{each['p50_ms'] - direct['p50_ms']:.2f} ms, "
                f"p99 +{each['p99_ms'] - direct['p99_ms']:.2f} ms")  # fmt: skip

    out = []
    if f.get("sqlite_limited_cpu_us"):
        out.append(("7. relay on SQLite, limiter on: CPU per delivery",
                    f"{f['sqlite_limited_cpu_us']:.0f} µs", ""))  # fmt: skip
    for name, label in (("postgres", "relay on PostgreSQL, 1 worker"),
                        ("postgres_2", "relay on PostgreSQL, 2 workers"),
                        ("postgres_limited", "relay on PostgreSQL, limiter on")):  # fmt: skip
        each = pg[name]
        out.append((f"7. {label}", f"{each['rps']:.0f} req/s, {each['errors']} errors; "
                    f"{each['cpu_us_per_delivery']:.0f} µs CPU per delivery "
                    f"({each['cpu_us_per_delivery'] / f['proxy_cpu_us_per_request']:.2f}x the "
                    f"proxy's); added at {rate} req/s {latency(each)}", ""))  # fmt: skip
    cost = pg["postgres"]["rps"] / pg["postgres_limited"]["rps"]
    out.append(("7. limiter's cost on PostgreSQL (off / on)", f"{cost:.2f}x", ""))
    if f.get("sqlite_limited_rps"):
        out.append(("7. limiter's cost on SQLite (off / on)",
                    f"{f['relay_rps'] / f['sqlite_limited_rps']:.2f}x", ""))  # fmt: skip
    return out

"""`relay serve` with a deliberate slowdown, for the CPU guard's self-test only:

    python -m tests.bench.slowed MICROSECONDS serve --host … --port …

Wraps the app the server builds in one ASGI layer that spins the CPU for MICROSECONDS on every
HTTP request, then runs the relay's own command line. Nothing in relay/ knows about it: the
benchmark uses it when asked (`scripts/bench --quick --self-test-slowdown 400`) to show the
guard failing on a slower relay.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import relay.app
from relay.commands.cli import main


def slowed(microseconds: float) -> None:
    build = relay.app.app_from_environ

    def app_from_environ(**given: Any) -> Any:
        inner = build(**given)

        async def busy(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                until = time.perf_counter() + microseconds / 1e6
                while time.perf_counter() < until:
                    pass
            await inner(scope, receive, send)

        return busy

    relay.app.app_from_environ = app_from_environ  # type: ignore[assignment]


if __name__ == "__main__":
    slowed(float(sys.argv[1]))
    raise SystemExit(main(sys.argv[2:]))

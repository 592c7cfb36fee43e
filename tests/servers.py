"""Real servers on loopback for end-to-end tests: an ASGI app under uvicorn in a thread, and
`relay serve` as a separate process (what Heroku runs), both on free ports."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp

from relay.app import create_app
from relay.sandbox import SandboxConfig, State, create_sandbox

from .conftest import BASE_ENV, PASSKIT_KEY, PASSKIT_SECRET, make_settings
from .processes import ServerProcess


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, http: Any = "auto", lifespan: str = "off", **options: Any
) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port (with more uvicorn `options` if given, e.g.
    `relay.web.serving.uvicorn_options`); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    settings = {"http": http, "ws": "none", "lifespan": lifespan, "log_level": "critical"}
    config = uvicorn.Config(app, **(settings | options))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def relay_process(env: Mapping[str, str], log: Path) -> ServerProcess:
    """`relay serve` in its own process, with `env` on top of the tests' settings; ready once
    /readyz answers."""
    argv = [sys.executable, "-m", "relay", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    settings = {**BASE_ENV, "RELAY_PUBLIC_URL": "{url}", **env}
    return ServerProcess(argv, settings, "/readyz", log=log)


@pytest.fixture
def sandbox() -> Iterator[tuple[str, State]]:
    """The PassKit sandbox under uvicorn (seeded with the demo program, campaign and event),
    accepting the tests' PassKit key and secret; yields its URL and its state."""
    app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(app) as url:
        yield url, app.state.sandbox


@contextmanager
def relay_on_sandbox(sandbox_url: str, folder: Path, **settings: str) -> Iterator[str]:
    """The relay under uvicorn (lifespan on, SQLite in `folder`) calling the sandbox at
    `sandbox_url`, with pass pages there too; yields the relay's base URL."""
    app = create_app(
        make_settings(
            PASSKIT_API_URL=sandbox_url,
            PASSKIT_PASS_URL=f"{sandbox_url}/pass",
            DATABASE_URL=f"sqlite:///{folder / 'relay.db'}",
            **settings,
        )
    )
    with serve_in_thread(app, lifespan="on") as url:
        yield url

"""Real servers on loopback for end-to-end tests: an ASGI app under uvicorn in a thread, and
`relay serve` as a separate process (what Heroku runs), both on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from relay.sandbox import SandboxConfig, State, create_sandbox

from .conftest import BASE_ENV, PASSKIT_KEY, PASSKIT_SECRET


@contextmanager
def serve_in_thread(app: ASGIApp, *, http: str = "auto", lifespan: str = "off") -> Iterator[str]:
    """`app` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=http, ws="none", lifespan=lifespan, log_level="critical")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RelayProcess:
    """`relay serve` in its own process, started with `env` on top of the tests' settings."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **BASE_ENV, "RELAY_PUBLIC_URL": self.url, **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> RelayProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relay", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"relay exited: {self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"relay did not become ready: {self.log.read_text()}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown, no flush
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def sandbox() -> Iterator[tuple[str, State]]:
    """The PassKit sandbox under uvicorn (seeded with the demo program, campaign and event),
    accepting the tests' PassKit key and secret; yields its URL and its state."""
    app = create_sandbox(SandboxConfig(api_key=PASSKIT_KEY, api_secret=PASSKIT_SECRET))
    with serve_in_thread(app) as url:
        yield url, app.state.sandbox

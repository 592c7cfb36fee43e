"""A server in its own process on a free loopback port, as Heroku or a terminal would run it:
started, waited for until a path answers, measured (start-up time, memory) and stopped or
killed. Shared by the end-to-end tests and the benchmark; no pytest here."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3, the state, first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone since the listing
        return None
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_s(root: int) -> float:
    """utime + stime of `root` and all its live descendants, plus what its reaped children
    used (cutime + cstime), in seconds."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            parents[int(entry.name)], stats[int(entry.name)] = int(fields[1]), fields
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    ticks = sum(sum(int(n) for n in stats[pid][11:15]) for pid in family if pid in stats)
    return ticks / TICKS


class ServerProcess:
    """`argv` (where `{port}` is replaced by a free port) with `env` on top of this process's
    environment; ready once `ready_path` answers below 500 (`method`, default GET)."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        ready_path: str,
        *,
        method: str = "GET",
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = {**os.environ, **{k: v.replace("{url}", self.url) for k, v in env.items()}}
        self.ready_path, self.method, self.cwd, self.log_path = ready_path, method, cwd, log
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.startup_s = 0.0

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        began = time.perf_counter()
        # To a file, never a pipe: a full pipe nobody reads would stall the server.
        self._log = self.log_path.open("w+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                        stdout=self._log, stderr=subprocess.STDOUT)  # fmt: skip
        while time.perf_counter() < began + timeout:
            if self.process.poll() is not None:
                said = self.output()
                self._close_log()  # not left for the garbage collector to find open
                raise RuntimeError(f"{self.argv[:4]} exited:\n{said}")
            try:
                answer = httpx.request(self.method, self.url + self.ready_path, timeout=1)
                if answer.status_code < 500:
                    self.startup_s = time.perf_counter() - began
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        self.kill()
        raise RuntimeError(f"{self.argv[:4]} did not become ready:\n{self.output()}")

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kb / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds the OS has counted for this server and every process it
        started (a multi-worker server's workers too), from /proc: not wall time."""
        assert self.process is not None
        return tree_cpu_s(self.process.pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

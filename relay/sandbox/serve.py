"""`relay sandbox`: the sandbox alone under uvicorn, for experiments, tests and benchmarks."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Mapping

import uvicorn

from relay.sandbox.app import SandboxConfig, create_sandbox
from relay.settings import Settings
from relay.web.serving import BodyDeadline, server_options


def serve_sandbox(host: str, port: int, env: Mapping[str, str]) -> None:
    """Accepts the environment's PassKit credentials when set (so a relay configured with them
    just points PASSKIT_API_URL here), else made-up ones it prints. Served like the relay, with
    its default timeouts and header limit (relay.web.serving) and no X-Forwarded-For believed."""
    base_url = f"http://localhost:{port}"
    key = env.get("PASSKIT_API_KEY") or "sandbox-key"
    secret = env.get("PASSKIT_API_SECRET") or "sandbox-secret-" + secrets.token_hex(8)
    config = SandboxConfig(key, secret, long_lived_token=env.get("PASSKIT_TOKEN") or None,
                           public_url=base_url)  # fmt: skip
    lines = [f"PassKit sandbox on {base_url} (issued passes: {base_url}/). Point a relay at it:"]
    if "PASSKIT_API_SECRET" in env:
        lines += [f"  PASSKIT_API_URL={base_url} PASSKIT_PASS_URL={base_url}/pass relay serve",
                  "  (the sandbox accepts this environment's PASSKIT_API_KEY and "
                  "PASSKIT_API_SECRET)"]  # fmt: skip
    else:
        lines += [f"  PASSKIT_API_URL={base_url} PASSKIT_PASS_URL={base_url}/pass \\",
                  f"  PASSKIT_API_KEY={key} PASSKIT_API_SECRET={secret} relay serve"]  # fmt: skip
    app = BodyDeadline(create_sandbox(config), Settings.body_timeout)
    server = _Announcing(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                        **server_options()), "\n".join(lines))  # fmt: skip
    server.run()
    if not server.started:  # it never listened (uvicorn said why)
        raise SystemExit(1)


class _Announcing(uvicorn.Server):
    """uvicorn's server printing `banner` once it listens: never before a bind that fails."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(self.banner, flush=True)

"""The floor the relay is measured against: a bare pass-through proxy in front of the sandbox.

One Starlette endpoint that takes the same form post the relay gets, turns it into the same
PassKit enrol JSON without any checking, and forwards it with a pooled client; one variant per
HTTP client the relay could use. Run as its own process:

    python -m tests.bench.proxy CLIENT PORT UPSTREAM AUTHORIZATION
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CLIENTS = ("aiohttp", "httpx", "httpx-aiohttp", "httpx2")
Send = Callable[[bytes], Awaitable[tuple[int, bytes]]]


@asynccontextmanager
async def make_sender(client: str, upstream: str, auth: str) -> AsyncIterator[Send]:
    """`send(json_body) -> (status, body)` over one pooled client of the kind named."""
    url = upstream + "/members/member"
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    if client == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

            async def send_aiohttp(body: bytes) -> tuple[int, bytes]:
                async with session.post(url, data=body, headers=headers) as response:
                    return response.status, await response.read()

            yield send_aiohttp
        return
    if client == "httpx2":
        import httpx2

        async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100)) as h2:

            async def send_httpx2(body: bytes) -> tuple[int, bytes]:
                response = await h2.post(url, content=body, headers=headers)
                return response.status_code, response.content

            yield send_httpx2
        return
    import httpx

    transport: httpx.AsyncBaseTransport | None = None
    if client == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=httpx.Limits(max_connections=100))
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(transport=transport, limits=limits) as hx:

        async def send_httpx(body: bytes) -> tuple[int, bytes]:
            response = await hx.post(url, content=body, headers=headers)
            return response.status_code, response.content

        yield send_httpx


def create_proxy(client: str, upstream: str, auth: str, program: str) -> Starlette:
    sender: dict[str, Send] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with make_sender(client, upstream, auth) as send:
            sender["send"] = send
            yield

    async def enrol(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        member: dict[str, Any] = {
            "programId": program,
            "tierId": "base",
            "externalId": form.get("external_id"),
            "person": {"emailAddress": form.get("email"), "forename": form.get("first_name")},
        }
        status, body = await sender["send"](json.dumps(member).encode())
        return Response(body, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/enrol", enrol, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    name, port, upstream, authorization, program = sys.argv[1:6]
    app = create_proxy(name, upstream, authorization, program)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)

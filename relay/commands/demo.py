"""`relay demo`: the relay and the PassKit sandbox in one process, one port, no account.

    http://localhost:8000/hooks/<token>     the relay, exactly as deployed
    http://localhost:8000/sandbox/…         the sandbox: PassKit's API, issued passes, pass pages

The relay reaches the sandbox over real HTTP (it is just another PASSKIT_API_URL), so what a
newcomer sees is what production does: signed URLs, templates, validation, retries, the
delivery log. Its SQLite database lives in a temporary folder, like the sandbox's state, so
every demo starts clean and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from relay.access.tokens import HookSigner
from relay.access.urlguard import guard_of
from relay.app import create_app
from relay.commands.demo_catch import PATH as CATCH_PATH
from relay.commands.demo_catch import CatchBox
from relay.delivery.templating import TemplateLibrary
from relay.hooks.minting import mint, registered
from relay.logsetup import configure_logging
from relay.sandbox import (
    DEMO_CAMPAIGN_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_TIER_IDS,
    DEMO_VENUE_ID,
    SandboxConfig,
    create_sandbox,
)
from relay.settings import Settings, load_settings
from relay.store import open_store
from relay.web.serving import BodyDeadline, uvicorn_options

SANDBOX_PREFIX = "/sandbox"


@dataclass(frozen=True)
class Demo:
    settings: Settings
    sandbox: SandboxConfig
    base_url: str
    stripe_secret: str = ""  # the demo's own whsec_…, for `relay stripe-sample --secret`
    events_secret: str = ""  # signs the sandbox's PassKit events (PASSKIT_WEBHOOK_SECRET)


def demo_config(env: Mapping[str, str], port: int, folder: Path) -> Demo:
    """Settings for a relay pointed at its own sandbox; PassKit credentials are made up here
    because the sandbox checks them like PassKit does."""
    base_url = f"http://localhost:{port}"
    stripe_secret = "whsec_demo" + secrets.token_hex(16)  # Stripe's samples are signed with it
    events_secret = secrets.token_urlsafe(24)  # the sandbox signs PassKit's events with it
    sandbox = SandboxConfig(
        api_key="demo-" + secrets.token_hex(4),
        api_secret=secrets.token_urlsafe(24),
        public_url=base_url + SANDBOX_PREFIX,
    )
    demo_env = {
        **{k: v for k, v in env.items() if k.startswith("RELAY_") and k != "RELAY_PUBLIC_URL"},
        "RELAY_SECRET_KEY": env.get("RELAY_SECRET_KEY") or secrets.token_urlsafe(32),
        "RELAY_PUBLIC_URL": base_url,
        "PORT": str(port),
        "PASSKIT_API_URL": f"http://127.0.0.1:{port}{SANDBOX_PREFIX}",
        "PASSKIT_PASS_URL": base_url + SANDBOX_PREFIX + "/pass",
        "PASSKIT_API_KEY": sandbox.api_key,
        "PASSKIT_API_SECRET": sandbox.api_secret,
        "DATABASE_URL": f"sqlite:///{folder / 'relay-demo.db'}",
        "RELAY_ADMIN_PASSWORD": env.get("RELAY_ADMIN_PASSWORD") or secrets.token_urlsafe(9),
        "STRIPE_WEBHOOK_SECRET": stripe_secret,
        "PASSKIT_WEBHOOK_SECRET": events_secret,
    }
    # The one loopback URL PassKit's events go to: the catch page, that exact URL.
    catch = f"http://127.0.0.1:{port}{CATCH_PATH}"
    settings = replace(load_settings(demo_env), allow_exact_urls=(catch,))
    return Demo(settings, sandbox, base_url, stripe_secret, events_secret)


def demo_app(demo: Demo) -> Starlette:
    relay = create_app(demo.settings)
    sandbox = create_sandbox(demo.sandbox)
    catch = CatchBox()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with relay.router.lifespan_context(relay):
            yield

    app = Starlette(
        routes=[
            *catch.routes(),  # /demo/catch: what a zap would receive from PassKit's events
            # The relay's own routes bound their bodies in create_app; the sandbox's too here.
            Mount(SANDBOX_PREFIX, app=BodyDeadline(sandbox, demo.settings.body_timeout)),
            Mount("/", app=relay),
        ],
        lifespan=lifespan,
    )
    app.state.relay_app = relay
    app.state.library = relay.state.services.library
    app.state.sandbox = sandbox.state.sandbox
    app.state.sandbox_events = sandbox.state.events  # where the sandbox sends PassKit's events
    app.state.catch = catch
    return app


# The Stripe endpoint's price map: `relay stripe-sample invoice.paid` pays this price.
DEMO_TIER_FOR_PRICE = "price_demo_gold=gold"


async def mint_demo_hooks(settings: Settings, library: TemplateLibrary) -> tuple[str, str, str]:
    """Registered URLs for the sandbox's demo program: a member-upsert hook, a Stripe
    endpoint (/stripe/…) and a PassKit events URL (/passkit/…) forwarding to /demo/catch."""
    base = {"program_id": DEMO_PROGRAM_ID, "tier_id": DEMO_TIER_IDS[0]}
    signer = HookSigner([k.reveal() for k in settings.secret_keys])
    # The sandbox's demo tiers keep UTC, the zone a demo member's expiry is read in.
    hook, _, url = mint(signer, library, "member-upsert", {**base, "timezone": "UTC"},
                        settings.public_url)  # fmt: skip
    stripe_params = {**base, "tier_for_price": DEMO_TIER_FOR_PRICE}
    stripe_hook, _, stripe_url = mint(signer, library, "stripe", stripe_params, settings.public_url)
    # Both legs stay inside this process's server: 127.0.0.1, as PASSKIT_API_URL is.
    inside = f"http://127.0.0.1:{settings.port}"
    catch = {"forward_to": inside + CATCH_PATH}
    events_hook, _, events_url = mint(signer, library, "passkit-events", catch, inside,
                                      guard=guard_of(settings))  # fmt: skip
    store = await open_store(settings.database_url.reveal())
    try:
        await store.add_hook(registered(hook, "relay demo"))
        await store.add_hook(registered(stripe_hook, "relay demo: Stripe"))
        await store.add_hook(registered(events_hook, "relay demo: PassKit events"))
    finally:
        await store.close()
    return url, stripe_url, events_url


# The sandbox's account, for the console's New hook form (its pickers list the same) and
# `relay url --param`: the ids a newcomer would otherwise have to dig out of the sandbox.
SANDBOX_IDS = f"""
The sandbox's PassKit account (pick these in the console's New hook form, or pass them to
relay url as --param program_id=… and so on):

  Program           Sandbox Coffee Club      program_id {DEMO_PROGRAM_ID}
  Tiers             Base, Silver, Gold       tier_id {", ".join(DEMO_TIER_IDS)}
  Coupon campaign   Sandbox Welcome Coupons  campaign_id {DEMO_CAMPAIGN_ID}
                    offer 10% off            offer_id {DEMO_OFFER_ID}
  Event             Sandbox Live             production_id {DEMO_PRODUCTION_ID}
                                             venue_id {DEMO_VENUE_ID}
                                             ticket_type_id {DEMO_TICKET_TYPE_ID}
"""


def banner(demo: Demo, url: str, stripe_url: str = "") -> str:
    # The demo's own throwaway password: printed so the newcomer can sign in.
    password = demo.settings.admin_password.reveal() if demo.settings.admin_password else "-"
    fields = "-d external_id=CRM-1 -d email=ana@example.com -d 'First Name=Ana' -d points=120"
    return f"""
passkit-relay demo: the relay and a PassKit sandbox on {demo.base_url} (no PassKit account;
nothing is billed, everything is forgotten when you stop it with Ctrl+C)

  Admin console:               {demo.base_url}/admin  (password: {password})
  Sandbox, every issued pass:  {demo.base_url}{SANDBOX_PREFIX}/
  What the hook takes:         open the hook URL below in a browser
{SANDBOX_IDS}
Try it (Zapier's "Webhooks by Zapier > POST" sends the same form):

  curl -X POST {shlex.quote(url)} \\
       {fields}

The answer's pass_url opens the pass card. Send it again with -d idempotency_key=run-1 twice to
see a replay answered as a duplicate; leave out email to see a friendly error.
{stripe_part(demo, stripe_url)}
{EVENTS_PART.format(base=demo.base_url, sandbox=SANDBOX_PREFIX, catch=CATCH_PATH)}

Hook URL (member-upsert, program {DEMO_PROGRAM_ID}, tier {DEMO_TIER_IDS[0]}):
{url}
"""


EVENTS_PART = """
PassKit's events back to a zap: each pass the sandbox issues sends "created" to the demo's
PassKit events URL; the relay checks the signature and forwards it to a stand-in Catch Hook.
On a pass card, "Add to a wallet" sends "installed". See what arrived: {base}{catch}"""


def relay_command(
    argv0: str | None = None, executable: str | None = None, on_path: str | None = None
) -> list[str]:
    """How to run this very relay from a new terminal: `relay` when the PATH finds this
    program, else the program's full path (`.venv/bin/relay` not on the PATH), else this
    Python with `-m relay`. What the banner prints must work when pasted anywhere."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    found = shutil.which("relay") if on_path is None else on_path
    program = Path(argv0).resolve() if argv0 and Path(argv0).name == "relay" else None
    if program is not None and program.is_file():
        if found and Path(found).resolve() == program:
            return ["relay"]
        return [str(program)]
    return [executable, "-m", "relay"]


def stripe_part(demo: Demo, stripe_url: str) -> str:
    """The banner's Stripe lines: the command that posts a signed sample event."""
    if not stripe_url:
        return ""
    command = shlex.join([*relay_command(), "stripe-sample", "checkout.session.completed",
                          "--to", stripe_url, "--secret", demo.stripe_secret])  # fmt: skip
    return f"""
Stripe, signed as Stripe signs it (the demo's endpoint and its signing secret):

  {command}

It prints the Checkout session's id and the success page Stripe would send the customer to.
With invoice.paid instead, the sample pays price_demo_gold: the endpoint's tier_for_price maps
it to gold."""


class _Stopped(SystemExit):
    """SIGTERM, turned into an exception so the temporary folder is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def _hang_up(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGTERM)  # a closed terminal stops the demo as SIGTERM does


def serve_demo(host: str, port: int, env: Mapping[str, str]) -> None:
    """Serve the demo until stopped; its temporary folder goes away however it stops.

    Ctrl+C (SIGINT) ends uvicorn.run normally. SIGTERM would not: uvicorn shuts down
    gracefully, then raises the signal again, and its default action ends the process before
    any `finally` runs. Here it raises `_Stopped` instead (a SystemExit, so asyncio lets it
    through), the folder is removed on the way out, and then SIGTERM is raised once more with
    its default action, so the exit status still says how the demo ended. SIGHUP (the
    terminal was closed) is handled as SIGTERM."""
    handlers: dict[int, Callable[[int, FrameType | None], None]] = {signal.SIGTERM: _stop}
    if hasattr(signal, "SIGHUP"):  # not on Windows
        handlers[signal.SIGHUP] = _hang_up
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        with tempfile.TemporaryDirectory(prefix="relay-demo-") as folder:
            demo = demo_config(env, port, Path(folder))
            app = demo_app(demo)
            url, stripe_url, events_url = asyncio.run(
                mint_demo_hooks(demo.settings, app.state.library)
            )
            # The sandbox plays PassKit's Integrations › Webhooks: it sends its pass events to
            # the demo's PassKit events URL, signed with the secret the relay checks.
            sink = app.state.sandbox_events
            sink.url, sink.secret = events_url, demo.events_secret
            configure_logging()
            print(banner(demo, url, stripe_url), flush=True)
            uvicorn.run(app, host=host, port=port, log_level="warning",
                        **uvicorn_options(demo.settings))  # fmt: skip
    except _Stopped as stopped:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.signal(stopped.signum, signal.SIG_DFL)
        signal.raise_signal(stopped.signum)
        raise  # only if SIGTERM's default action did not end the process
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

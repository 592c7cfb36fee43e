"""A faithful in-memory fake of PassKit's REST API, for tests, benchmarks and `relay demo`.

    app = create_sandbox(SandboxConfig(api_key="k", api_secret="s"))
    app.state.sandbox  # the State: members, coupons, tickets, emails, calls, faults

Modules, in the order a call goes through them: `app` (routes, faults, auth, answers) →
`auth` (JWT / long-lived token) → `proto` + `messages` (grpc-gateway-style decoding) →
`members` / `coupons` / `tickets` / `distribution` (operations) over `state` (records, seed) →
`errors` (PassKit's error shapes, ERROR_SHAPES); `faults` (latency, 429/503, drops) and `pages`
(pass cards). A test moves the sandbox's time with `create_sandbox(config, clock=…)`: tokens
are checked against that clock as PassKit checks them (refused 60 s after their `iat`).
"""

from __future__ import annotations

from relay.sandbox.app import SandboxConfig, create_sandbox
from relay.sandbox.errors import ERROR_SHAPES, SandboxError
from relay.sandbox.faults import Faults
from relay.sandbox.state import (
    DEMO_CAMPAIGN_ID,
    DEMO_DRAFT_PROGRAM_ID,
    DEMO_OFFER_ID,
    DEMO_PRODUCTION_ID,
    DEMO_PROGRAM_ID,
    DEMO_TICKET_TYPE_ID,
    DEMO_TIER_IDS,
    DEMO_VENUE_ID,
    State,
)

__all__ = [
    "DEMO_CAMPAIGN_ID",
    "DEMO_DRAFT_PROGRAM_ID",
    "DEMO_OFFER_ID",
    "DEMO_PRODUCTION_ID",
    "DEMO_PROGRAM_ID",
    "DEMO_TICKET_TYPE_ID",
    "DEMO_TIER_IDS",
    "DEMO_VENUE_ID",
    "ERROR_SHAPES",
    "Faults",
    "SandboxConfig",
    "SandboxError",
    "State",
    "create_sandbox",
]

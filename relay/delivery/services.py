"""What one relay app is made of, built once from the settings: templates, the token signer,
the PassKit client, the store, idempotency and revocation. The routes, the admin console and
replays all use the same instance, so a replay goes through exactly what a delivery does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from relay.access.ratelimit import HookRateLimit
from relay.access.revocations import RevocationCache
from relay.access.tokens import HookSigner
from relay.delivery.alerts import Alerts
from relay.delivery.idempotency import OnceGuard
from relay.delivery.pipeline import Relay, utc_now
from relay.delivery.templating import TemplateLibrary
from relay.passkit.account import AccountCache
from relay.passkit.client import PassKitClient
from relay.passkit.outbound import OutboundLimiter, shared_slots
from relay.sealing import Sealer
from relay.settings import ConfigError, Settings
from relay.store import DAY, Store
from relay.store.handle import StoreHandle


@dataclass
class Services:
    settings: Settings
    library: TemplateLibrary
    signer: HookSigner
    client: PassKitClient
    store: StoreHandle
    guard: OnceGuard
    relay: Relay
    revocations: RevocationCache
    rate_limit: HookRateLimit
    clock: Callable[[], datetime]
    alerts: Alerts
    # Seals personal data at rest and keys the blind index a person's rows are found by.
    sealer: Sealer
    accounts: AccountCache  # the PassKit account as last read: names for the public hook pages

    def timestamp(self) -> float:
        return self.clock().timestamp()

    async def aclose(self) -> None:
        await self.alerts.stop()
        await self.client.aclose()
        await self.store.close()


def sealer_for(settings: Settings) -> Sealer:
    """The app's and the commands' one Sealer: RELAY_ENCRYPTION_KEY's keys, else keys derived
    from RELAY_SECRET_KEY's (relay.sealing)."""
    return Sealer.from_secrets(
        [k.reveal() for k in settings.secret_keys],
        [k.reveal() for k in settings.encryption_keys],
    )


def build_services(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    library: TemplateLibrary | None = None,
    clock: Callable[[], datetime] = utc_now,
    store: Store | None = None,
) -> Services:
    """Raises ConfigError when a template is broken, so the boot stops."""
    library = library or TemplateLibrary(settings.templates_dir)
    if library.problems:
        raise ConfigError(library.problems)
    sealer = sealer_for(settings)
    handle = StoreHandle(settings.database_url.reveal(), store=store, sealer=sealer)
    # PassKit's rate, kept by every process on this database together (relay.passkit.outbound).
    limiter = OutboundLimiter(settings.passkit_rate_limit, shared_slots(handle.get))
    client = PassKitClient(settings, transport=transport, limiter=limiter)

    def timestamp() -> float:
        return clock().timestamp()

    async def load_revoked() -> dict[str, float]:
        return await (await handle.get()).revoked_hooks()

    guard = OnceGuard(handle, ttl=settings.idempotency_days * DAY, clock=timestamp)
    return Services(
        settings=settings,
        library=library,
        signer=HookSigner([k.reveal() for k in settings.secret_keys]),
        client=client,
        store=handle,
        guard=guard,
        relay=Relay(library=library, client=client, clock=clock, guard=guard),
        revocations=RevocationCache(load_revoked),
        # Bursts of ten seconds' worth: a back-fill's first hundreds go straight through.
        rate_limit=HookRateLimit(settings.rate_limit, burst=settings.rate_limit * 10),
        clock=clock,
        alerts=Alerts(settings, handle, library),
        sealer=sealer,
        accounts=AccountCache(client),
    )

"""`relay erase EMAIL_OR_EXTERNAL_ID [--passkit]` and `relay reencrypt`: the terminal's side of
relay.delivery.erase and of a key rotation (relay.store.privacy)."""

from __future__ import annotations

import sys

from relay.delivery.erase import erase, nothing_found
from relay.delivery.services import build_services
from relay.sealing import SealError
from relay.settings import Settings, display_url
from relay.store.privacy import PLACES

# `relay erase`'s exit status when nothing matched (documented in its --help and in
# docs/truthful-answers.md): not 0, so a script or a DPO's checklist never reads "done".
ERASE_NOTHING_FOUND = 3


async def erase_command(settings: Settings, identifier: str, *, passkit: bool) -> int:
    if not identifier.strip():
        print("relay: say whom to erase: an email, an external id or a Stripe customer id",
              file=sys.stderr)  # fmt: skip
        return 2
    if passkit and not settings.has_passkit_credentials:
        print("relay: --passkit needs PASSKIT_API_KEY and PASSKIT_API_SECRET (or PASSKIT_TOKEN)",
              file=sys.stderr)  # fmt: skip
        return 2
    services = build_services(settings)
    try:
        store = await services.store.get()
        client = services.client if passkit else None
        erased = await erase(store, services.sealer, identifier, client=client)
    finally:
        await services.aclose()
    if not erased.found:
        print(f"relay: {nothing_found(identifier)}", file=sys.stderr)
        for line in erased.passkit:
            print(f"  {line}", file=sys.stderr)
        return ERASE_NOTHING_FOUND
    print(f"Erased {identifier.strip()!r} from the relay ({erased.total} rows):")
    for line in erased.lines():
        print(f"  {line}")
    return 0


async def reencrypt_command(settings: Settings) -> int:
    services = build_services(settings)
    where = display_url(settings.database_url.reveal())
    try:
        store = await services.store.get()
        print(f"Re-sealing personal data in {where} under the first key…")
        counts = await store.reseal_all()
    except SealError:
        print("relay: a stored value opens with none of the keys in RELAY_ENCRYPTION_KEY: put "
              "the key it was sealed with back (after the new one) and run this again",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        await services.aclose()
    for table, count in counts.items():
        print(f"  {PLACES[table][:1].upper()}{PLACES[table][1:]}: {count} re-sealed")
    print("Done: every value now opens with the first key alone; older keys can be dropped.")
    return 0

"""The terminal's side of relay.passkit.account: `relay check --live` lists the PassKit account the
configured credentials reach, and `relay url` looks a hook's ids up in it before minting."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from relay.hooks.minting import Endpoint, LiveCheck, account_check
from relay.passkit.account import Account, AccountError, load_account
from relay.passkit.client import PassKitClient
from relay.settings import Settings


def read_account(settings: Settings) -> Account:
    """The PassKit account the configured credentials reach (AccountError says why not)."""

    async def read() -> Account:
        client = PassKitClient(settings)
        try:
            return await load_account(client)
        finally:
            await client.aclose()

    return asyncio.run(read())


def live_check(settings: Settings) -> tuple[LiveCheck, Account | None]:
    """The live part of minting: the account PassKit lists (also where a hook's default time
    zone is found), and the check of a hook's ids in it; a refusal saying why when it cannot be
    read."""
    try:
        account = read_account(settings)
    except AccountError as exc:
        line = (f"the ids cannot be looked up at PassKit: {exc} (relay url --offline mints "
                "without looking them up)")  # fmt: skip

        def unread(target: Endpoint, params: Mapping[str, str]) -> list[str]:
            return [line]

        return unread, None
    return account_check(account), account


def check_live(settings: Settings) -> int:
    """`relay check --live`: the account's programs, campaigns and productions, read from
    PassKit with the configured credentials; exit 1 with one line saying what to change."""
    try:
        account = read_account(settings)
    except AccountError as exc:
        print(f"problem: {exc}")
        return 1
    print(f"ok: PassKit connected to {account.where} as {account.key}: {account.summary()}")
    for program in account.programs:
        print(f"program {program.name}  {program.id}{'  (draft)' if program.draft else ''}")
        for tier in program.tiers:
            print(f"  tier {tier.name}  {tier.id}")
    for campaign in account.campaigns:
        print(f"campaign {campaign.name}  {campaign.id}{'  (draft)' if campaign.draft else ''}")
        for offer in campaign.offers:
            print(f"  offer {offer.name}  {offer.id}")
    for production in account.productions:
        draft = "  (draft)" if production.draft else ""
        print(f"production {production.name}  {production.id}{draft}")
        for ticket_type in production.ticket_types:
            print(f"  ticket type {ticket_type.name}  {ticket_type.id}")
    for venue in account.venues:
        print(f"venue {venue.name}  {venue.id}")
    for warning in account.warnings():
        print(f"warning: {warning}")
    return 0

"""Erasing one person (`relay erase`, the console's Erase page): their deliveries, stored answers
and forwarded PassKit events (relay.store.privacy), their spend ledger and checkout records,
the console imports whose files name them (relay.store.imports), and with `passkit=True` their
member record at PassKit.

PassKit's delete needs the member's program: the relay knows it only from what it sent PassKit
for that person (their logged PassKit requests), so those are read before the rows go. With
RELAY_LOG_PAYLOADS off there is nothing to read, and the result says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.errors import RelayError
from relay.passkit.client import PassKitClient, raise_for_answer
from relay.passkit.operations import CATALOG, build_request
from relay.sealing import Sealer
from relay.store import DeliveryRecord, Store
from relay.store.personal import people_in
from relay.store.privacy import PLACES


@dataclass
class Erasure:
    """What was removed: rows per place (in words), and what happened at PassKit."""

    removed: dict[str, int] = field(default_factory=dict)
    passkit: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    @property
    def found(self) -> bool:
        """Anything of the person was found to erase (0 rows everywhere: most likely a
        misspelt address, and a legal request not carried out: never reported as done)."""
        return self.total > 0

    def lines(self) -> list[str]:
        # "Place: count" reads right for 1 and for 3 ("1 deliveries" did not).
        lines = [
            f"{place[:1].upper()}{place[1:]}: {count}" for place, count in self.removed.items()
        ]
        return lines + self.passkit


def nothing_found(identifier: str) -> str:
    """The sentence for an erase that found nothing, the terminal's and the console's."""
    return f"nothing found for {identifier.strip()!r} — check the spelling; nothing was erased"


async def erase(
    store: Store,
    sealer: Sealer,
    identifier: str,
    *,
    client: PassKitClient | None = None,
) -> Erasure:
    """Remove `identifier` (an email, external id or Stripe customer id) everywhere the relay
    keeps it; with `client`, also delete their member record(s) at PassKit."""
    identifier = identifier.strip()
    result = Erasure()
    records = await store.person_deliveries(identifier)
    members = members_of(records) if client else []
    # Asked by email, a person's stored answers are under their external id (and the other
    # way round): every identifier their deliveries name is erased with them.
    every = dict.fromkeys([identifier, *people_in(*(r.request for r in records)),
                           *people_in(*(r.passkit_request for r in records))])  # fmt: skip
    for who in every:
        for table, count in (await store.erase_person(who)).items():
            result.removed[PLACES[table]] = result.removed.get(PLACES[table], 0) + count
    # The spend ledger and checkout records keep only blind indexes: found under every key.
    blinds = [blind for who in every for blind in sealer.blinds(who)]
    result.removed["spend ledger entries"] = await store.erase_spend(blinds)
    result.removed["checkout records"] = await store.erase_checkouts(blinds)
    # The console's imports: every upload or failed-rows file naming them, whole.
    result.removed["import files (uploads and failed rows)"] = sum(
        [await store.erase_imports(who) for who in every]
    )
    if client is not None:
        result.passkit = await delete_members(client, members)
    return result


def members_of(records: list[DeliveryRecord]) -> list[tuple[str, str]]:
    """(program id, external id) of each member the relay sent PassKit for this person."""
    found: dict[tuple[str, str], None] = {}
    for record in records:
        sent = record.passkit_request
        body = sent.get("json") if isinstance(sent, Mapping) else None
        if not isinstance(body, Mapping):
            continue
        program, external = body.get("programId"), body.get("externalId")
        if isinstance(program, str) and program and isinstance(external, str) and external:
            found[(program, external)] = None
    return list(found)


async def delete_members(client: PassKitClient, members: list[tuple[str, str]]) -> list[str]:
    """Delete each member at PassKit; one sentence each, in words."""
    if not members:
        return [
            "Nothing was deleted at PassKit: the relay has no record of which program this "
            "person is in (no PassKit request for them in the delivery log). Delete them in "
            "PassKit's portal if they have a pass."
        ]
    operation = CATALOG["members.delete"]
    said = []
    for program, external in members:
        who = f"member {external} in program {program}"
        try:
            request = build_request(operation, {"externalId": external, "programId": program})
            answer = await client.send(request)
            if answer.status == 404:
                said.append(f"PassKit had no {who} (already deleted).")
                continue
            raise_for_answer(answer, operation)
        except RelayError as exc:
            said.append(f"PassKit did not delete {who}: {exc.logged_message()}")
            continue
        said.append(f"Deleted {who} at PassKit: their pass stops working.")
    return said

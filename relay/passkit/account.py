"""The live connection check: what the configured PassKit account holds, read through PassKit's
own list calls (server-streamed, `{"result": …}` a line).

    account = await load_account(client)          # AccountError: one line saying what to change
    account.programs[0].tiers[0].name
    account.draft_warning("program_id", some_id)  # None, or why a draft is not for real members

Used by `relay check --live`, the admin console's PassKit page and mint form, and the start-up
log line. Failures are one plain line each: the key or secret (401/403), the region (PassKit's
answer for an account of the other region is not documented: a 401/403/404 naming the account
or region, or — with PassKit's own URLs — the same credentials accepted by the other region),
or the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from relay.errors import PassKitTimeout, PassKitUnavailable
from relay.passkit.client import PassKitClient, PassKitList, passkit_message
from relay.passkit.contract import rpc

log = logging.getLogger("relay")

LIMIT = 1000  # records asked for per list (io.Filters.limit)
TIMEOUT = 10.0  # seconds for the whole account
DRAFT = "PROJECT_DRAFT"
DRAFT_WARNING = (
    "{kind} “{name}” ({id}) is still a draft in PassKit: passes issued from it carry a "
    "“Test Pass - Not for Commercial Use” back field and expire two days after issue. "
    "Publish it in PassKit before real {who} get passes."
)
REFUSED = "PassKit refused the API key and secret: copy them again from Settings › Developer Tools"
WRONG_REGION = "PASSKIT_REGION pub1 = EU, pub2 = US: the account is in the other one"
# Words a region without the account might use (unconfirmed: see the module docstring).
_ELSEWHERE = re.compile(
    r"\b(account|user|company)\b.*\b(not found|no such|unknown|does not exist|in this region)\b"
    r"|\bno such (account|user)\b|\bregion\b",
    re.IGNORECASE,
)
_REGION_URL = re.compile(r"^https://api\.(pub[12])\.passkit\.io$")


class AccountError(Exception):
    """The account could not be read; `str()` is the one line to show. `kind`: "credentials",
    "region", "network" or "passkit"."""

    def __init__(self, line: str, kind: str) -> None:
        super().__init__(line)
        self.kind = kind


@dataclass(frozen=True)
class Named:
    id: str
    name: str
    # The IANA time zone PassKit keeps for it ("" when none): a venue's `timezone`
    # (event_tickets.Venue, required by PassKit), a tier's `timezone` (members.Tier; PassKit's
    # Program message carries none).
    timezone: str = ""


Tier = Offer = TicketType = Venue = Named


@dataclass(frozen=True)
class Project:
    """A program, campaign or production, with what hangs under it."""

    id: str
    name: str
    status: tuple[str, ...] = ()
    children: tuple[Named, ...] = ()
    timezone: str = ""  # a campaign's `ianaTimezone` (single_use_coupons.CouponCampaign)

    @property
    def draft(self) -> bool:
        return DRAFT in self.status


class Program(Project):
    @property
    def tiers(self) -> tuple[Named, ...]:
        return self.children


class Campaign(Project):
    @property
    def offers(self) -> tuple[Named, ...]:
        return self.children


class Production(Project):
    @property
    def ticket_types(self) -> tuple[Named, ...]:
        return self.children


@dataclass(frozen=True)
class Account:
    where: str  # pub1, pub2, or the API's host when PASSKIT_API_URL points elsewhere
    key: str  # the API key (or "a long-lived token")
    programs: list[Program] = field(default_factory=list)
    campaigns: list[Campaign] = field(default_factory=list)
    productions: list[Production] = field(default_factory=list)
    venues: list[Named] = field(default_factory=list)  # account-wide in PassKit

    def drafts(self) -> list[tuple[str, Project]]:
        """(kind, project) of every program, campaign and production still in draft."""
        kinds = (("Program", self.programs), ("Campaign", self.campaigns),
                 ("Production", self.productions))  # fmt: skip
        return [(kind, p) for kind, projects in kinds for p in projects if p.draft]

    def warnings(self) -> list[str]:
        return [_draft_line(kind, project) for kind, project in self.drafts()]

    def draft_warning(self, param: str, value: str) -> str | None:
        """The warning for a hook param naming a draft (program_id, campaign_id,
        production_id), else None."""
        projects: Mapping[str, list[Any]] = {
            "program_id": self.programs,
            "campaign_id": self.campaigns,
            "production_id": self.productions,
        }
        kind = param.removesuffix("_id").title()
        for project in projects.get(param, []):
            if project.id == value and project.draft:
                return _draft_line(kind, project)
        return None

    def program(self, program_id: str) -> Program | None:
        return next((p for p in self.programs if p.id == program_id), None)

    def summary(self) -> str:
        """ "2 programs (1 in draft), 1 campaign, 1 production"."""
        parts = []
        for word, projects in (("program", self.programs), ("campaign", self.campaigns),
                               ("production", self.productions)):  # fmt: skip
            count = len(projects)
            text = f"{count} {word}{'' if count == 1 else 's'}"
            drafts = sum(1 for p in projects if p.draft)
            parts.append(f"{text} ({drafts} in draft)" if drafts else text)
        return ", ".join(parts)

    def choices(self) -> dict[str, list[tuple[str, list[Named]]]]:
        """For pickers: each hook param's options, grouped under their parent's name
        (one unnamed group for the top-level ones)."""

        def top(projects: list[Any]) -> list[tuple[str, list[Named]]]:
            return [("", [Named(p.id, p.name + (" (draft)" if p.draft else "")) for p in projects])]

        def under(projects: list[Any]) -> list[tuple[str, list[Named]]]:
            return [(p.name, list(p.children)) for p in projects if p.children]

        return {
            "program_id": top(self.programs),
            "tier_id": under(self.programs),
            "campaign_id": top(self.campaigns),
            "offer_id": under(self.campaigns),
            "production_id": top(self.productions),
            "ticket_type_id": under(self.productions),
            "venue_id": [("", list(self.venues))],
        }


def _draft_line(kind: str, project: Project) -> str:
    who = {"Program": "members", "Campaign": "customers"}.get(kind, "ticket holders")
    return DRAFT_WARNING.format(kind=kind, name=project.name, id=project.id, who=who)


def region_of(api_url: str) -> str:
    """pub1 / pub2 for PassKit's own API URLs, else the URL's host."""
    match = _REGION_URL.match(api_url.rstrip("/"))
    return match.group(1) if match else (urlsplit(api_url).netloc or api_url)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _status(record: Mapping[str, Any]) -> tuple[str, ...]:
    status = record.get("status")
    if isinstance(status, str):
        return (status,)
    return tuple(str(s) for s in status) if isinstance(status, list) else ()


async def _list(client: PassKitClient, name: str, message: dict[str, Any]) -> list[Any]:
    call = rpc(name)
    path = call.path
    for var in call.path_fields:
        path = path.replace("{" + var + "}", str(message.get(var, "")))
    try:
        answer = await client.list_records(call.method, path, message)
    except PassKitUnavailable as exc:
        host = urlsplit(client.settings.passkit_api_url).netloc
        raise AccountError(f"cannot reach {host}: check the network", "network") from exc
    except PassKitTimeout as exc:
        host = urlsplit(client.settings.passkit_api_url).netloc
        line = f"{host} did not answer in time: check the network"
        raise AccountError(line, "network") from exc
    if not answer.ok:
        raise await _failure(client, answer)
    return answer.records


async def _failure(client: PassKitClient, answer: PassKitList) -> AccountError:
    message = passkit_message(answer.json)
    if answer.status in (401, 403, 404) and _ELSEWHERE.search(message):
        return AccountError(WRONG_REGION, "region")
    if answer.status in (401, 403):
        if await _other_region_accepts(client):
            return AccountError(WRONG_REGION, "region")
        return AccountError(REFUSED, "credentials")
    return AccountError(f"PassKit answered {answer.status}: {message}", "passkit")


async def _other_region_accepts(client: PassKitClient) -> bool:
    """With PassKit's own URLs: do the same credentials work in the other region?"""
    region = region_of(client.settings.passkit_api_url)
    if region not in ("pub1", "pub2"):
        return False
    other = "pub2" if region == "pub1" else "pub1"
    settings = dataclasses.replace(
        client.settings, passkit_api_url=f"https://api.{other}.passkit.io"
    )
    probe = PassKitClient(settings)
    try:
        call = rpc("members.Members.listPrograms")
        answer = await asyncio.wait_for(
            probe.list_records(call.method, call.path, {"limit": 1}), 5.0
        )
        return answer.ok
    except (TimeoutError, PassKitUnavailable, PassKitTimeout):
        return False
    finally:
        await probe.aclose()


def _who(client: PassKitClient) -> str:
    settings = client.settings
    if settings.passkit_token:
        return "a long-lived token"
    return settings.passkit_api_key or "no credentials"


async def _read(client: PassKitClient) -> Account:
    filters = {"limit": LIMIT}
    programs = await _list(client, "members.Members.listPrograms", filters)  # fails fast

    async def program(record: Mapping[str, Any]) -> Program:
        message = {"programId": _text(record.get("id")), "filters": filters}
        tiers = await _list(client, "members.Members.listTiers", message)
        return Program(_text(record.get("id")), _text(record.get("name")), _status(record),
                       tuple(_named(t) for t in tiers))  # fmt: skip

    async def campaign(record: Mapping[str, Any]) -> Campaign:
        message = {"campaignId": _text(record.get("id")), "filters": filters}
        offers = await _list(client, "single_use_coupons.SingleUseCoupons.listCouponOffers",
                             message)  # fmt: skip
        return Campaign(_text(record.get("id")), _text(record.get("name")), _status(record),
                        tuple(_named(o, "offerTitle") for o in offers),
                        _text(record.get("ianaTimezone")))  # fmt: skip

    async def production(record: Mapping[str, Any]) -> Production:
        message = {"productionId": _text(record.get("id")), "filters": filters}
        types = await _list(client, "event_tickets.EventTickets.listTicketTypes", message)
        return Production(_text(record.get("id")), _text(record.get("name")), _status(record),
                          tuple(_named(t) for t in types))  # fmt: skip

    campaigns, productions, venues = await asyncio.gather(
        _list(client, "single_use_coupons.SingleUseCoupons.listCouponCampaigns", filters),
        _list(client, "event_tickets.EventTickets.listProductions", filters),
        _list(client, "event_tickets.EventTickets.listVenues", filters),
    )
    found = await asyncio.gather(
        asyncio.gather(*(program(r) for r in programs)),
        asyncio.gather(*(campaign(r) for r in campaigns)),
        asyncio.gather(*(production(r) for r in productions)),
    )
    return Account(
        where=region_of(client.settings.passkit_api_url),
        key=_who(client),
        programs=list(found[0]),
        campaigns=list(found[1]),
        productions=list(found[2]),
        venues=[_named(v) for v in venues],
    )


def _named(record: Mapping[str, Any], name_field: str = "name") -> Named:
    return Named(
        _text(record.get("id")),
        _text(record.get(name_field)) or _text(record.get("name")),
        _text(record.get("timezone")),
    )


async def load_account(client: PassKitClient, *, timeout: float = TIMEOUT) -> Account:
    """Everything the hooks can point at in the configured account; AccountError (one line)
    when PassKit cannot be read within `timeout` seconds."""
    if not client.settings.has_passkit_credentials:
        line = "no PassKit credentials: set PASSKIT_API_KEY and PASSKIT_API_SECRET"
        raise AccountError(line, "credentials")
    try:
        return await asyncio.wait_for(_read(client), timeout)
    except TimeoutError:
        host = urlsplit(client.settings.passkit_api_url).netloc
        line = f"{host} did not answer within {timeout:g} s: check the network"
        raise AccountError(line, "network") from None


class AccountCache:
    """The account as last read, read again once it is `ttl` seconds old: what the public hook
    pages and the console name ids from, so page views read PassKit at most once a minute. A
    public page never waits on it longer than `wait` seconds (the ids are shown instead); the
    console reads it with `read`, which says why when it cannot."""

    def __init__(self, client: PassKitClient, ttl: float = 60.0, wait: float = 2.0) -> None:
        self.client, self.ttl, self.wait = client, ttl, wait
        self._last: tuple[float, Account] | None = None
        self._tried = 0.0  # when it was last read, worked or not: a failing PassKit waits too

    def last(self) -> Account | None:
        return self._last[1] if self._last else None

    async def get(self) -> Account | None:
        now = time.monotonic()
        if self._last and now - self._last[0] < self.ttl:
            return self._last[1]
        if now - self._tried < self.ttl and self._tried:
            return self.last()
        self._tried = now
        try:
            self._last = (now, await load_account(self.client, timeout=self.wait))
        except Exception:  # noqa: BLE001 - a page shows ids rather than fail
            return self.last()
        return self._last[1]

    async def read(
        self, *, fresh: bool = False, timeout: float = 5.0
    ) -> tuple[Account | None, str]:
        """The account, read again once it is `ttl` old or when `fresh` (the console's PassKit
        page, the mint form after a change at PassKit); else None and the one line saying why
        not, for a console page to show."""
        now = time.monotonic()
        if not fresh and self._last and now - self._last[0] < self.ttl:
            return self._last[1], ""
        self._tried = now
        try:
            account = await load_account(self.client, timeout=timeout)
        except AccountError as exc:
            return None, str(exc)
        except Exception:  # a page must show, PassKit read or not; the log keeps the why
            log.exception("the PassKit account could not be read")
            return None, "PassKit could not be read just now: try again in a moment."
        self._last = (now, account)
        return account, ""

"""Minting hook URLs: which params a template (or the Stripe endpoint) takes, checked before a
URL is signed, so a URL never leaves the relay missing what its deliveries will need.

Each value is checked by its template's declaration (`kind`, see relay.delivery.templating: a
country the phone library knows, one of a param's choices, the shape of a PassKit id) and stored
normalised (`mdy` → `MDY`); `relay check` re-checks every registered hook the same way.

Shared by `relay url`, the demo and the admin console. `stripe` is not a template but the Stripe
endpoint: its URL carries the params every `templates/stripe/*` template may use.
"""

from __future__ import annotations

import functools
import importlib.resources
import time
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import phonenumbers
import pycountry

from relay.access.tokens import (
    CURRENT_VERSION,
    VERSION_PARAM,
    Hook,
    HookSigner,
    hook_url,
    new_hook_id,
)
from relay.access.urlguard import UrlGuard
from relay.delivery.templating import ParamSpec, TemplateLibrary, check_params_of
from relay.events import params as passkit_params
from relay.forms import dates as humandates
from relay.forms import phones
from relay.passkit.account import Account, Named, Project
from relay.store import HookRecord
from relay.stripe.events import PARAMS_TEMPLATE, TEMPLATE_PREFIX


@dataclass(frozen=True)
class Endpoint:
    """What a URL can be minted for: a hook template, or the Stripe endpoint."""

    name: str
    summary: str
    params: Mapping[str, ParamSpec]
    kind: str  # the URL's path segment: "hooks" or "stripe"
    title: str = ""  # its plain name ("Enrol a new member"), what the console shows first
    group: str = "Other"  # the mint form's group: Members, Coupons, Tickets or Stripe
    additive: bool = False  # adds or subtracts: minted only with key_field (or key_field=none)


class MintError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def endpoint(library: TemplateLibrary, name: str) -> Endpoint:
    if name == PARAMS_TEMPLATE:
        params: dict[str, ParamSpec] = {}
        for each in library.templates.values():
            if each.name.startswith(TEMPLATE_PREFIX):
                for spec in each.params.values():
                    seen = params.get(spec.name)
                    params[spec.name] = spec if seen is None or spec.required else seen
        summary = "Stripe events: issue, update and revoke passes from payments and subscriptions"
        return Endpoint(name, summary, params, "stripe", STRIPE_TITLE, "Stripe")
    if name == passkit_params.TEMPLATE:
        return Endpoint(name, passkit_params.SUMMARY, passkit_params.PARAMS, passkit_params.KIND,
                        passkit_params.TITLE, EVENTS_GROUP)  # fmt: skip
    template = library.get(name)
    if template is None or name.startswith(TEMPLATE_PREFIX):
        known = [n for n in library.names() if not n.startswith(TEMPLATE_PREFIX)]
        there = ", ".join([*known, "stripe", passkit_params.TEMPLATE])
        raise MintError([f"no template named {name!r}; there are: {there}"])
    return Endpoint(name, template.summary, template.params, "hooks", template.title,
                    template.group, template.additive)  # fmt: skip


KEY_FIELD_NEEDED = (
    "key_field is needed: what identifies one purchase, visit or order in your app? Set "
    "key_field to that field (such as order_id), so the same order sent again counts once, or "
    "key_field=none if each call should count, even the same one twice"
)
STRIPE_TITLE = "Passes from Stripe payments and subscriptions"
EVENTS_GROUP = "Events from PassKit"
GROUP_ORDER = ("Members", "Coupons", "Tickets", "Stripe", EVENTS_GROUP)


def grouped(library: TemplateLibrary) -> list[tuple[str, list[Endpoint]]]:
    """What a URL can be minted for, as the console offers it: by group (Members, Coupons,
    Tickets, Stripe, then any other a template names), each in its templates' order."""
    names = [n for n in library.names() if not n.startswith(TEMPLATE_PREFIX)]
    names += [PARAMS_TEMPLATE, passkit_params.TEMPLATE]
    groups: dict[str, list[Endpoint]] = {group: [] for group in GROUP_ORDER}
    for name in names:
        target = endpoint(library, name)
        groups.setdefault(target.group, []).append(target)
    return [(group, sorted(targets, key=lambda t: t.title.casefold()))
            for group, targets in groups.items() if targets]  # fmt: skip


# Countries a hook's `country` setting may name, by name (the mint form's list): the phone
# library's regions, named as ISO 3166 does (pycountry; its common name where it has one, e.g.
# "Bolivia"); three regions that are not ISO countries are named here. Not the phone library's
# geocoder: importing it costs ~100 MB of memory in every process.
_UNNAMED = {"AC": "Ascension Island", "TA": "Tristan da Cunha", "XK": "Kosovo"}


@functools.cache
def countries() -> tuple[tuple[str, str], ...]:
    """(ISO code, English name) for every country a hook's phone numbers can be read in,
    sorted by name."""
    named = []
    for code in phonenumbers.SUPPORTED_REGIONS:
        found = pycountry.countries.get(alpha_2=code)
        name = (getattr(found, "common_name", None) or found.name) if found else ""
        named.append((code, name or _UNNAMED.get(code, code)))
    return tuple(sorted(named, key=lambda pair: pair[1]))


# The live part of minting: the problems with `params` that only PassKit's account can tell
# (a program or tier id that does not exist there), each listing what exists. `relay url
# --offline` goes without it.
LiveCheck = Callable[[Endpoint, Mapping[str, str]], list[str]]


def account_check(account: Account) -> LiveCheck:
    """The live part of minting: each id the hook names exists in the PassKit `account`
    (a tier in its program, an offer in its campaign, a ticket type in its production),
    refused with the list of what exists there."""

    def check(target: Endpoint, params: Mapping[str, str]) -> list[str]:
        problems: list[str] = []

        def look(name: str, options: Sequence[Named | Project], where: str) -> None:
            value = params.get(name)
            if not value or name not in target.params or any(o.id == value for o in options):
                return
            there = ", ".join(f"{o.id} ({o.name})" for o in options) or "none"
            problems.append(f"{name} {value!r} is not {where}; there are: {there}")

        def within(name: str, projects: Sequence[Project], what: str) -> Project | None:
            look(name, projects, f"a {what} in the PassKit account ({account.where})")
            return next((p for p in projects if p.id == params.get(name)), None)

        program = within("program_id", account.programs, "program")
        if program is not None:
            look("tier_id", program.children, f"a tier of program {program.name}")
        campaign = within("campaign_id", account.campaigns, "campaign")
        if campaign is not None:
            look("offer_id", campaign.children, f"an offer of campaign {campaign.name}")
        production = within("production_id", account.productions, "production")
        if production is not None:
            look("ticket_type_id", production.children,
                 f"a ticket type of production {production.name}")  # fmt: skip
        look("venue_id", account.venues, f"a venue in the PassKit account ({account.where})")
        return problems

    return check


TIMEZONE_NEEDED = (
    "timezone is needed: choose the time zone where the times your app sends happen (an IANA "
    "name such as Europe/London or America/New_York). None could be found: {why}"
)
# A venue set to one of these has had no zone chosen (PassKit requires one, and UTC is what a
# venue made without thinking carries).
_UNSET_ZONES = frozenset({"UTC", "UCT", "GMT", "GMT0", "Universal", "Zulu", "Greenwich"})


@functools.cache
def country_zones() -> dict[str, tuple[str, ...]]:
    """Each ISO 3166 country's IANA time zones, from the IANA database's own zone.tab as the
    tzdata package ships it."""
    text = (importlib.resources.files("tzdata.zoneinfo") / "zone.tab").read_text("utf-8")
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _, name, *_ = line.split("\t")
            zones.setdefault(code, []).append(name)
    return {code: tuple(names) for code, names in zones.items()}


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone a hook's `timezone` may name, for the mint form's list."""
    return tuple(sorted(zoneinfo.available_timezones()))


def _chosen(zone: str) -> str:
    """`zone` as a hook stores it, "" when it names no zone (or none was chosen)."""
    try:
        return str(humandates.zone(zone)) if zone else ""
    except ValueError:
        return ""


def zone_default(
    target: Endpoint, params: Mapping[str, str], account: Account | None
) -> tuple[str, str]:
    """(the time zone a hook minted without `timezone` reads its times in, where it came
    from in words); ("", why none) when there is none: a ticket hook's venue (one set to UTC
    counts as not set), a member hook's tier (PassKit keeps a zone on each tier, none on the
    program: without a tier_id, the zone all the program's tiers share), a coupon hook's
    campaign, else the `country` setting's zone when that country has only one."""
    tried: list[str] = []
    if account is not None:
        if venue_id := params.get("venue_id"):
            venue = next((v for v in account.venues if v.id == venue_id), None)
            zone = _chosen(venue.timezone) if venue else ""
            if zone and zone.removeprefix("Etc/") not in _UNSET_ZONES:
                return zone, f"venue {venue.name if venue else venue_id}"
            tried.append("the venue has no time zone but UTC in PassKit")
        if program_id := params.get("program_id"):
            program = account.program(program_id)
            tiers = [t for t in program.tiers if t.id == params.get("tier_id")] if program else []
            if program and not params.get("tier_id"):
                tiers = list(program.tiers)
            zones = {_chosen(t.timezone) for t in tiers}
            if len(zones) == 1 and (zone := zones.pop()):
                return zone, f"program {program.name if program else program_id}"
            tried.append("the program's tiers have no one time zone in PassKit")
        if campaign_id := params.get("campaign_id"):
            campaign = next((c for c in account.campaigns if c.id == campaign_id), None)
            if campaign and (zone := _chosen(campaign.timezone)):
                return zone, f"campaign {campaign.name}"
            tried.append("the campaign has no time zone in PassKit")
    elif target.params.keys() & {"venue_id", "program_id", "campaign_id"}:
        tried.append("the PassKit account was not read")
    if country := params.get("country"):
        try:
            code = phones.region(country) or ""
        except ValueError:
            code = ""
        named = country_zones().get(code, ())
        if len(named) == 1:
            return named[0], f"country {country_name(country)}"
        tried.append(f"{country_name(country)} has {len(named) or 'no'} time zones")
    else:
        tried.append("no country is set")
    return "", "; ".join(tried)


def check_params(
    target: Endpoint, given: Mapping[str, str], guard: UrlGuard | None = None
) -> dict[str, str]:
    """`given` as the hook will carry it (values normalised); MintError listing every problem,
    each with what would be accepted. `guard`: where the relay may send (RELAY_ALLOW_URLS);
    without, public https only."""
    given = {k: v for k, v in given.items() if k != VERSION_PARAM}  # the relay's, not a setting
    checked, wrong = check_params_of(target.params, given)
    problems = [str(problem) for problem in wrong]
    if target.kind == passkit_params.KIND:
        problems += passkit_params.param_problems(dict(given), guard or UrlGuard())
    unknown = sorted(set(given) - set(target.params))
    if unknown:
        known = ", ".join(target.params) or "none"
        problems.append(f"{target.name} takes no param {', '.join(unknown)} (it takes: {known})")
    for spec in target.params.values():
        if spec.required and spec.default is None and not given.get(spec.name):
            problems.append(f"{spec.title} ({spec.name}) is required: {spec.help}")
    if target.additive and not given.get("key_field", "").strip():
        problems.append(KEY_FIELD_NEEDED)
    if problems:
        raise MintError(problems)
    if target.kind == "hooks":
        checked[VERSION_PARAM] = str(CURRENT_VERSION)
    return checked


def settings_problems(
    library: TemplateLibrary,
    template: str,
    params: Mapping[str, str],
    guard: UrlGuard | None = None,
) -> str:
    """What is wrong with a registered hook's settings ("" when nothing is), checked as
    minting checks them now: for `relay check`, about hooks minted before it did."""
    try:
        target = endpoint(library, template)
    except MintError:
        return f"its template {template} is gone from this relay"
    _, wrong = check_params_of(target.params, params)
    problems = [f"{problem}; mint a new URL with --param {problem.name}=…" for problem in wrong]
    if target.kind == passkit_params.KIND:
        problems += [
            f"{problem}; nothing is sent there: mint a new URL"
            for problem in passkit_params.param_problems(dict(params), guard or UrlGuard())
        ]
    for spec in target.params.values():
        if spec.required and spec.default is None and not params.get(spec.name):
            problems.append(f"it has no {spec.name}; mint a new URL with --param {spec.name}=…")
    return "; ".join(problems)


def registered(hook: Hook, label: str = "") -> HookRecord:
    """The registry's row for a hook just minted (created now)."""
    return HookRecord(hook.id, hook.template, dict(hook.params), label, created_at=time.time())


def mint(
    signer: HookSigner,
    library: TemplateLibrary,
    name: str,
    params: Mapping[str, str],
    base: str,
    *,
    live: LiveCheck | None = None,
    guard: UrlGuard | None = None,
    account: Account | None = None,
) -> tuple[Hook, Endpoint, str]:
    """A new hook for `name` with `params`, and its URL under `base`; MintError if refused.
    With `live`, the ids are also looked up at PassKit once everything else is right. `guard`:
    where the relay may send (relay.access.urlguard); without, public https only. A hook that
    reads date-times and was given no `timezone` gets its default (zone_default, from
    `account`: the PassKit account as read now) stored in its settings, so its deliveries never
    wait on the account and its URL never changes meaning; none found is refused."""
    target = endpoint(library, name)
    checked = check_params(target, params, guard)
    if live is not None and (problems := live(target, checked)):
        raise MintError(problems)
    if target.kind == "hooks" and "timezone" in target.params and not checked.get("timezone"):
        zone, why = zone_default(target, checked, account)
        if not zone:
            raise MintError([TIMEZONE_NEEDED.format(why=why)])
        checked = dict(sorted({**checked, "timezone": zone}.items()))
    if target.name == passkit_params.TEMPLATE:
        checked[passkit_params.VERSION[0]] = passkit_params.VERSION[1]
    hook = Hook(id=new_hook_id(), template=target.name, params=checked)
    return hook, target, hook_url(base, signer.mint(hook), kind=target.kind)


@dataclass(frozen=True)
class Setting:
    """One hook setting as the console shows it: its name in words, its value in words (a
    program's name, "Day first (31/12/2026)", "United Kingdom") and as stored (the id)."""

    name: str
    label: str
    value: str
    stored: str


def settings_of(
    specs: Mapping[str, ParamSpec], params: Mapping[str, str], account: Account | None = None
) -> list[Setting]:
    """A hook's settings in words, in its template's order (`specs`: the params it declares);
    ids are named from `account` (the PassKit account as last read) when it has them."""
    named: dict[str, str] = {}
    if account is not None:
        for projects, parent in ((account.programs, "program_id"),
                                 (account.campaigns, "campaign_id"),
                                 (account.productions, "production_id")):  # fmt: skip
            for project in projects:
                named[f"{parent}={project.id}"] = project.name
                if project.id == params.get(parent):
                    named |= {f"*={child.id}": child.name for child in project.children}
        named |= {f"venue_id={venue.id}": venue.name for venue in account.venues}
    shown = []
    for name in [*specs, *sorted(set(params) - set(specs))]:
        stored = params.get(name, "")
        if not stored or name == VERSION_PARAM:
            continue
        spec = specs.get(name) or ParamSpec(name)
        value = stored
        if spec.kind == "choice":
            value = spec.choice_label(stored)
        elif spec.kind == "country":
            value = country_name(stored)
        elif spec.kind in ("passkit_id", "tier_id"):
            value = named.get(f"{name}={stored}") or named.get(f"*={stored}") or stored
        shown.append(Setting(name, spec.title, value, stored))
    return shown


def country_name(value: str) -> str:
    """The country a hook's `country` setting names ("GB", "UK" or "44" → United Kingdom);
    the value itself when it names none."""
    try:
        code = phones.region(value)
    except ValueError:
        return value
    return dict(countries()).get(code or "", value)


def remint_changes(
    library: TemplateLibrary, target: Endpoint, params: Mapping[str, str]
) -> list[str]:
    """What a URL minted today does differently from one minted before v2 for `target` (whose
    settings are `params`), in words, only what applies to its template: for the console's
    one-click re-mint of an old hook."""
    if target.kind != "hooks":
        return []
    template = library.get(target.name)
    lines = ["A misspelt field name (Frist Name for First Name) is refused, naming the field it "
             "meant, instead of being left out of the pass."]  # fmt: skip
    if template is not None and template.operation.looks_up:
        lines.append("A search that finds nobody answers found: false and the zap goes on, "
                     "instead of failing the step.")  # fmt: skip
    if "number_format" in target.params:
        lines.append("Numbers are read one way (1,234.56 unless you choose 1.234,56): a list "
                     "such as 10,20 is refused instead of being read as 10.2.")  # fmt: skip
    if "timezone" in target.params:
        zone = params.get("timezone") or "the venue's, program's or campaign's time zone"
        lines.append(f"Times sent without an offset are read as {zone} time, not UTC.")
    if target.additive:
        lines.append("The same order sent twice counts once: the relay recognises it by the "
                     "field that identifies one purchase, visit or order.")  # fmt: skip
    return lines

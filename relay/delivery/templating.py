"""Jinja as a strict JSON generator: request templates in `templates/*.json.j2`.

A template's first Jinja comment holds TOML front matter (operation, summary, params, fields);
its body renders the JSON body of one PassKit operation. Rendering is sandboxed and strict:
undefined names fail, and every `{{ … }}` is JSON-encoded on the way out (values already encoded
by `|tojson` pass through), so no input can break the JSON or run template code. Null values
are dropped after rendering, so optional fields can be written unconditionally.

All templates are compiled when the library loads, so a broken template stops the boot (and
`relay check`) instead of a customer's zap.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tomllib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from relay.errors import (
    InvalidRequest,
    MissingFields,
    RelayError,
    TemplateProblem,
    quote_value,
)
from relay.forms import dates as humandates
from relay.forms import phones
from relay.forms.fields import Fields
from relay.forms.filters import FILTERS, NUMBER_FORMATS
from relay.forms.imageurls import image_url_problem
from relay.forms.payloads import normalise_key
from relay.forms.spend_tiers import parse_spend_tiers, spend_tiers_text
from relay.passkit.operations import CATALOG, Operation
from relay.redact import mask_private

log = logging.getLogger("relay")
SUFFIX = ".json.j2"
_FRONT_MATTER = re.compile(r"\A\s*\{#-?\s*---[ \t]*\n(.*?)\n[ \t]*---\s*-?#\}", re.DOTALL)


class JsonText(str):
    """Text that is already JSON (from `|tojson`); the finalizer leaves it alone."""


class SkipDelivery(Exception):
    """Raised by `skip("reason")` in a template: the delivery is acknowledged and ignored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FieldSpec:
    name: str
    required: bool = False
    help: str = ""
    example: str = ""
    type: str = "text"
    # Other names a sender may use for this field (`phone` for `mobile`), declared by the
    # template, never guessed; read for hooks minted from v2 on (relay.delivery.unused).
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    help: str = ""
    required: bool = True
    default: str | None = None
    example: str = ""
    kind: str = "text"  # one of PARAM_KINDS: what a value must look like, checked at minting
    choices: tuple[str, ...] = ()  # kind "choice": the values allowed (matched in any case)
    # The name a person reads on the mint form and the hook pages ("Program", not program_id);
    # `label` in the front matter, else the well-known name's, else the name in words.
    label: str = ""
    choice_labels: tuple[str, ...] = ()  # one per choice, in words ("Day first (31/12/2026)")

    @property
    def title(self) -> str:
        return self.label or plain_name(self.name)

    def choice_label(self, choice: str) -> str:
        """The words for one of the choices (the choice itself when the template gives none)."""
        for value, words in zip(self.choices, self.choice_labels, strict=False):
            if value == choice:
                return words
        return choice


# What a hook param's value may be. A template declares `kind` (and `choices`) under
# [params.NAME]; a param declared without one gets the kind of its well-known name, else "text".
PARAM_KINDS = ("text", "country", "choice", "passkit_id", "tier_id", "currency", "price_tiers",
               "spend_tiers", "image_url", "key_field", "timezone")  # fmt: skip
WELL_KNOWN_PARAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "country": ("country", ()),
    "date_order": ("choice", ("DMY", "MDY")),
    "program_id": ("passkit_id", ()),
    "campaign_id": ("passkit_id", ()),
    "offer_id": ("passkit_id", ()),
    "production_id": ("passkit_id", ()),
    "venue_id": ("passkit_id", ()),
    "ticket_type_id": ("passkit_id", ()),
    "tier_id": ("tier_id", ()),
    "currency": ("currency", ()),
    "tier_for_price": ("price_tiers", ()),
    "tier_for_spend": ("spend_tiers", ()),
    # How the hook reads numbers (hooks minted from v2 on); every template with a number or
    # money field takes it (NUMBER_FORMAT_PARAM).
    "number_format": ("choice", NUMBER_FORMATS),
    # Where a date-time without an offset is read (hooks minted from v2 on; an IANA name).
    "timezone": ("timezone", ()),
    # The field naming one purchase, visit or order, for hooks that add or subtract.
    "key_field": ("key_field", ()),
    # A search step's miss (hooks minted from v2 on): 200 found: false, or the old 404.
    "if_missing": ("choice", ("empty", "fail")),
}
# What a person reads for a well-known param; a template's `label` wins, other names are put
# in words by plain_name.
WELL_KNOWN_LABELS = {
    "program_id": "Program",
    "tier_id": "Tier",
    "campaign_id": "Coupon campaign",
    "offer_id": "Coupon offer",
    "production_id": "Event production",
    "venue_id": "Venue",
    "ticket_type_id": "Ticket type",
    "country": "Country for local phone numbers",
    "date_order": "Date order",
    "currency": "Currency",
    "tier_for_price": "Tier for each Stripe price",
    "tier_for_spend": "Tier for what a customer has spent in all",
    "tier_down": "Move a pass down after a refund",
    "if_missing": "When nobody is found",
    "key_field": "What identifies one purchase, visit or order in your app",
    "number_format": "How your app writes numbers",
    "timezone": "Time zone of the times your app sends",
}
WELL_KNOWN_CHOICE_LABELS = {
    "date_order": ("Day first (31/12/2026)", "Month first (12/31/2026)"),
    "number_format": (
        "1,234.56: a dot before decimals (12.50), commas between thousands; what "
        "Shopify, Stripe and most apps send in every country",
        "1.234,56: a comma before decimals (12,50), dots between thousands",
    ),
    "if_missing": (
        "Answer found: false, and the zap goes on (a Filter step can stop it)",
        "Fail the step (404)",
    ),
}


def plain_name(name: str) -> str:
    """A param or field name in words: `ticket_type_id` → "Ticket type", `first_name` →
    "First name" (the fallback when a template gives no label)."""
    words = name.removesuffix("_id").replace("_", " ").replace("-", " ").strip() or name
    return words[:1].upper() + words[1:]


# Kinds only PassKit can judge for sure: their shape is checked when a URL is minted and by
# `relay check`, while a delivery leaves them to PassKit (which names a missing id itself).
PASSKIT_KINDS = frozenset({"passkit_id"})
_PASSKIT_ID = re.compile(r"[0-9A-Za-z]{22}")  # base62, as PassKit's ids (and the sandbox's)
_TIER_ID = re.compile(r"[^\s,=]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_FIELD_NAME = re.compile(r"[^\W]{1,64}")  # a field's normalised name: letters, digits, _
# key_field's value for "each call counts, even the same one twice"
NO_KEY_FIELD = "none"


class ParamProblem(ValueError):
    """A hook param's value its template's declaration refuses; `str()` says what to change."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name


def _either(choices: tuple[str, ...]) -> str:
    return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else choices)


def check_param(spec: ParamSpec, value: str) -> str:
    """`value` as the hook stores it (`mdy` → `MDY`), or ParamProblem listing what is valid."""
    text = value.strip()
    shown = f"{spec.name} {quote_value(value)}"
    if spec.kind == "timezone":
        try:
            return str(humandates.zone(text))
        except ValueError as exc:
            raise ParamProblem(spec.name, f"{shown}: {exc}") from None
    if spec.kind == "key_field":
        name = normalise_key(text)
        if not _FIELD_NAME.fullmatch(name):
            raise ParamProblem(spec.name, f"{shown} is not a field name: name the field that "
                               "identifies one purchase, visit or order (such as order_id), or "
                               "none")  # fmt: skip
        return name
    if spec.kind == "country":
        try:
            phones.region(text)
        except ValueError:
            raise ParamProblem(spec.name, f"{shown} is not a country the phone library knows: "
                               "use an ISO code such as US or GB") from None  # fmt: skip
        return text.upper()
    if spec.kind == "choice":
        for choice in spec.choices:
            if text.casefold() == choice.casefold():
                return choice
        raise ParamProblem(spec.name, f"{shown} must be {_either(spec.choices)}")
    if spec.kind == "passkit_id" and not _PASSKIT_ID.fullmatch(text):
        raise ParamProblem(spec.name, f"{shown} is not a PassKit id: those are 22 letters and "
                           "digits, as PassKit's portal shows them")  # fmt: skip
    if spec.kind == "tier_id" and not _TIER_ID.fullmatch(text):
        raise ParamProblem(spec.name, f"{shown} is not a tier id: one word with no spaces, "
                           "such as base or gold")  # fmt: skip
    if spec.kind == "currency":
        if not _CURRENCY.fullmatch(text):
            raise ParamProblem(spec.name, f"{shown} is not a currency: use its 3-letter ISO 4217 "
                               "code, such as GBP, USD or EUR")  # fmt: skip
        return text.upper()
    if spec.kind == "price_tiers":
        pairs = [part.strip().partition("=") for part in text.split(",") if part.strip()]
        if not pairs or not all(
            sep and _TIER_ID.fullmatch(price.strip()) and _TIER_ID.fullmatch(tier.strip())
            for price, sep, tier in pairs
        ):
            raise ParamProblem(spec.name, f"{shown} must be price=tier pairs separated by "
                               "commas, such as price_1AbC=gold,price_2DeF=silver")  # fmt: skip
    if spec.kind == "spend_tiers":
        try:
            return spend_tiers_text(parse_spend_tiers(text))
        except ValueError as exc:
            raise ParamProblem(spec.name, f"{shown} {exc}") from None
    if spec.kind == "image_url" and (problem := image_url_problem(text)):
        raise ParamProblem(spec.name, f"{shown} {problem}")
    return text


def check_params_of(
    specs: Mapping[str, ParamSpec], given: Mapping[str, str], *, passkit_ids: bool = True
) -> tuple[dict[str, str], list[ParamProblem]]:
    """`given` with each declared param's value checked and normalised, and every problem
    found (empty values are left alone: the declared default applies). Without `passkit_ids`,
    ids are not looked at (a delivery leaves them to PassKit)."""
    checked = dict(given)
    problems: list[ParamProblem] = []
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None or not value or (not passkit_ids and spec.kind in PASSKIT_KINDS):
            continue
        try:
            checked[name] = check_param(spec, value)
        except ParamProblem as problem:
            problems.append(problem)
    return checked, problems


@dataclass(frozen=True)
class RequestTemplate:
    name: str
    path: Path
    operation: Operation
    summary: str
    description: str
    params: Mapping[str, ParamSpec]
    fields: Mapping[str, FieldSpec]
    one_of: tuple[str, ...]  # at least one of these fields must be sent
    jinja: Template = field(repr=False, compare=False)
    # "ignore": PassKit's "no such member" acknowledges the delivery instead of failing it
    # (a Stripe cancellation for a pass that was never issued, a delete already done).
    if_missing: str = "fail"
    # Adds or subtracts (points, visits, a redemption): hooks minted from v2 on must say which
    # field names one purchase, visit or order (key_field), or key_field=none.
    additive: bool = False
    title: str = ""  # the plain name on the mint form ("Enrol a new member"); else the summary
    group: str = "Other"  # where the mint form lists it: Members, Coupons, Tickets

    @property
    def required_fields(self) -> list[str]:
        return [f.name for f in self.fields.values() if f.required]

    # What the template reads, worked out once per template rather than on every delivery
    # (relay.delivery.unused asks on each one). cached_property writes the instance's __dict__
    # directly, so it works on this frozen dataclass.
    @functools.cached_property
    def field_names(self) -> frozenset[str]:
        """The fields it reads by name (not its `meta_*`-like patterns)."""
        return frozenset(spec.name for spec in self.fields.values() if "*" not in spec.name)

    @functools.cached_property
    def alias_names(self) -> frozenset[str]:
        """The aliases its fields declare (`phone` for `mobile`)."""
        return frozenset(alias for spec in self.fields.values() for alias in spec.aliases)

    @functools.cached_property
    def field_prefixes(self) -> tuple[str, ...]:
        """The prefixes of its patterns (`meta_` of `meta_*`)."""
        return tuple(s.name[:-1] for s in self.fields.values() if s.name.endswith("*"))

    @functools.cached_property
    def jinja_globals(self) -> dict[str, Any]:
        """Its Jinja globals as one plain dict (Jinja keeps them as a ChainMap over the
        environment's, and walks it twice for every render: ~5 µs)."""
        return dict(self.jinja.globals)

    @functools.cached_property
    def by_names(self) -> dict[Any, Any]:
        """Answers worked out from a delivery's field names alone, kept per template by the
        module that asks (relay.delivery.unused): one zap sends the same names every time."""
        return {}


# Built once: json.dumps with any argument other than its defaults builds a new encoder per call
# (~0.6 µs of the ~0.75 a value costs); a template writes a dozen values a delivery.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


# A template writes a dozen values a delivery, most of them text or nothing: those two skip
# the encoder's own dispatch (which builds a new C encoder for every value that is not text).
_ENCODE_TEXT = json.encoder.encode_basestring  # ensure_ascii=False's encoder for text


def _json_out(value: Any) -> str:
    if isinstance(value, str):
        return value if isinstance(value, JsonText) else _ENCODE_TEXT(value)
    if value is None:
        return "null"
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        return _ENCODE(value)
    except TypeError:
        raise TemplateError(f"cannot write a {type(value).__name__} into JSON") from None


def _tojson(value: Any) -> JsonText:
    return JsonText(_json_out(value))


def _skip(reason: str = "skipped by the template") -> NoReturn:
    raise SkipDelivery(str(reason))


def _dig(data: Any, *paths: str) -> Any:
    """The first of `paths` ("a.b.0.c") found in `data` with a value, else none: reads fields
    that moved between API versions (Stripe's basil) without tripping StrictUndefined."""
    for path in paths:
        value = data
        for key in path.split("."):
            if isinstance(value, Mapping):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                value = None
                break
        if value is not None:
            return value
    return None


def _pairs(text: Any) -> dict[str, str]:
    """`"price_1=gold, price_2=silver"` → a dict (hook params that map one thing to another)."""
    pairs = (part.partition("=") for part in str(text or "").split(","))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


class _JsonEnvironment(SandboxedEnvironment):
    """Sandboxed; `a.b` on a dict reads the key first, so a field named `items` or a Stripe
    object's `items` list is not shadowed by the dict method of the same name."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def make_environment(folder: Path) -> SandboxedEnvironment:
    env = _JsonEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_json_out,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    env.filters["tojson"] = _tojson
    env.filters["pairs"] = _pairs
    env.globals["skip"] = _skip
    env.globals["dig"] = _dig
    return env


def _prune(value: Any) -> Any:
    """Drop nulls (and objects left empty by them): PassKit treats absent as "not given"."""
    if isinstance(value, dict):
        pruned = {}
        for key, item in value.items():
            if isinstance(item, dict | list):  # text and numbers are kept as they are
                item = _prune(item)
                if item == {}:
                    continue
            elif item is None:
                continue
            pruned[key] = item
        return pruned
    if isinstance(value, list):
        return [_prune(v) for v in value if v is not None]
    return value


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line an exception was raised on (Jinja maps its frames to the template)."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return lines[-1] if lines else getattr(exc, "lineno", None)


def _parse_front_matter(name: str, source: str) -> dict[str, Any]:
    match = _FRONT_MATTER.match(source)
    if not match:
        raise ValueError("it does not start with a {#--- … ---#} front matter comment")
    try:
        return tomllib.loads(match.group(1))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"its front matter is not valid TOML: {exc}") from None


def _param_spec(name: str, raw: Any) -> ParamSpec:
    kind, choices = WELL_KNOWN_PARAMS.get(name, ("text", ()))
    label = WELL_KNOWN_LABELS.get(name, "")
    choice_labels = WELL_KNOWN_CHOICE_LABELS.get(name, ())
    if isinstance(raw, str):
        return ParamSpec(name, help=raw, kind=kind, choices=choices, label=label,
                         choice_labels=choice_labels)  # fmt: skip
    if not isinstance(raw, dict):
        raise ValueError(f"param {name} must be a help text or a table")
    default = raw.get("default")
    if "kind" in raw:
        kind, choices = str(raw["kind"]), ()
    if kind not in PARAM_KINDS:
        raise ValueError(f"param {name}: kind {kind!r} is not one of: {', '.join(PARAM_KINDS)}")
    listed = raw.get("choices", choices)
    # The well-known words go with the well-known choices only (a template may list others).
    well_known = WELL_KNOWN_PARAMS.get(name, ("text", ()))[1]
    known_words = choice_labels if tuple(map(str, listed or ())) == well_known else ()
    listed_labels = raw.get("choice_labels", known_words)
    if not isinstance(listed, list | tuple) or (kind == "choice") != bool(listed):
        raise ValueError(f'param {name}: a list of choices goes with kind = "choice", and only')
    if not isinstance(listed_labels, list | tuple) or (
        listed_labels and len(listed_labels) != len(listed)
    ):
        raise ValueError(f"param {name}: choice_labels needs one label for each of its choices")
    spec = ParamSpec(
        name,
        help=str(raw.get("help", "")),
        required=bool(raw.get("required", default is None)),
        default=None if default is None else str(default),
        example=str(raw.get("example", "")),
        kind=kind,
        choices=tuple(str(c) for c in listed),
        label=str(raw.get("label", label)),
        choice_labels=tuple(str(c) for c in listed_labels),
    )
    if spec.default:
        try:
            check_param(spec, spec.default)
        except ParamProblem as problem:
            raise ValueError(f"param {name}'s default: {problem}") from None
    return spec


# Every template with a number or money field takes the hook setting number_format (read by
# hooks minted from v2 on; older URLs read numbers leniently, as they always did).
NUMERIC_TYPES = ("number", "money")
NUMBER_FORMAT_PARAM = _param_spec("number_format", {
    "help": "How the numbers your app sends are written: every number and amount of this hook "
            "is read this one way, and a list such as 10,20 is refused, never guessed",
    "default": NUMBER_FORMATS[0], "required": False, "example": NUMBER_FORMATS[0]})  # fmt: skip


TIMEZONE_PARAM = _param_spec("timezone", {
    "help": "Where the times your app sends without an offset happen, as an IANA name such as "
            "America/New_York: 2026-03-01 19:30 is read there (one with an offset or Z keeps "
            "it). Left unset, the PassKit venue's, tier's or campaign's zone, else the "
            "country's, is chosen when the URL is made",
    "required": False, "example": "Europe/London"})  # fmt: skip


# The mint form's groups, by what an operation works on (`group` in the front matter wins).
GROUPS = {"members": "Members", "distribution": "Members", "coupons": "Coupons",
          "tickets": "Tickets"}  # fmt: skip


def _build(name: str, path: Path, meta: dict[str, Any], jinja: Template) -> RequestTemplate:
    op_name = meta.get("operation")
    if op_name not in CATALOG:
        known = ", ".join(sorted(CATALOG))
        raise ValueError(f"operation {op_name!r} is not one of: {known}")
    fields = {}
    for fname, raw in (meta.get("fields") or {}).items():
        if not isinstance(raw, dict):
            raise ValueError(f"fields.{fname} must be a table")
        fields[fname] = FieldSpec(
            fname,
            required=bool(raw.get("required", False)),
            help=str(raw.get("help", "")),
            example=str(raw.get("example", "")),
            type=str(raw.get("type", "text")),
            aliases=tuple(str(alias) for alias in raw.get("aliases", ())),
        )
    for spec in fields.values():
        taken = [alias for alias in spec.aliases if alias in fields]
        if taken:
            raise ValueError(f"fields.{spec.name}: alias {taken[0]!r} is a field of its own")
    one_of = tuple(str(f) for f in meta.get("one_of", ()))
    for fname in one_of:
        if fname not in fields:
            raise ValueError(f"one_of names {fname!r}, which is not under [fields]")
    params = {p: _param_spec(p, raw) for p, raw in (meta.get("params") or {}).items()}
    if any(spec.type in NUMERIC_TYPES for spec in fields.values()):
        params.setdefault("number_format", NUMBER_FORMAT_PARAM)
    if any(spec.type == "datetime" for spec in fields.values()):
        params.setdefault("timezone", TIMEZONE_PARAM)
    if_missing = str(meta.get("if_missing", "fail"))
    if if_missing not in ("fail", "ignore"):
        raise ValueError(f'if_missing must be "fail" or "ignore" (got {if_missing!r})')
    return RequestTemplate(
        name=name,
        path=path,
        operation=CATALOG[op_name],
        summary=str(meta.get("summary", "")),
        description=str(meta.get("description", "")),
        params=params,
        fields=fields,
        one_of=one_of,
        jinja=jinja,
        if_missing=if_missing,
        additive=bool(meta.get("additive", False)),
        title=str(meta.get("title") or meta.get("summary") or name),
        group=str(meta.get("group") or GROUPS.get(str(op_name).split(".")[0], "Other")),
    )


class TemplateLibrary:
    """Every template under one folder, parsed and compiled once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = make_environment(folder)
        self.templates: dict[str, RequestTemplate] = {}
        self.problems: list[str] = []
        for path in sorted(folder.rglob("*" + SUFFIX)):
            relative = path.relative_to(folder).as_posix()
            name = relative[: -len(SUFFIX)]
            try:
                meta = _parse_front_matter(name, path.read_text(encoding="utf-8"))
                self.templates[name] = _build(name, path, meta, self.env.get_template(relative))
            except TemplateError as exc:
                line = getattr(exc, "lineno", None)
                where = f" line {line}" if line else ""
                self.problems.append(f"template {name}{where}: {exc}")
            except (ValueError, UnicodeDecodeError) as exc:
                self.problems.append(f"template {name}: {exc}")

    def get(self, name: str) -> RequestTemplate | None:
        return self.templates.get(name)

    def names(self) -> list[str]:
        return sorted(self.templates)


def check_fields(template: RequestTemplate, fields: Fields, received: list[str]) -> None:
    """Report every missing required field at once, before rendering."""
    missing = [name for name in template.required_fields if name not in fields]
    if template.one_of and not any(name in fields for name in template.one_of):
        missing.append(" or ".join(template.one_of))
    if missing:
        raise MissingFields(missing, received)


def resolve_params(template: RequestTemplate, given: Mapping[str, str]) -> dict[str, Any]:
    """The hook's params with declared defaults; a missing required param is the operator's
    mistake at minting time, reported as such."""
    params: dict[str, Any] = {}
    for spec in template.params.values():
        value = given.get(spec.name) or spec.default
        if value is None and spec.required:
            raise InvalidRequest(
                f"{spec.name} is a hook setting this URL does not have.",
                field=spec.name,
                hint=f"Ask whoever runs the relay for a new hook URL with its "
                f"{spec.title} setting filled in ({spec.help or 'see the template'}).",
            )
        params[spec.name] = value
    for key, value in given.items():
        params.setdefault(key, value)
    return params


def render(
    template: RequestTemplate,
    fields: Fields,
    params: Mapping[str, Any],
    *,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    updating: bool = False,
) -> Any:
    """Render a template into a JSON value (nulls pruned). Input problems raise their own
    FieldError; anything else wrong with the template raises TemplateProblem.

    `updating` is true when an upsert re-renders for its update path, so a template can leave
    out what must only be set on creation (such as a default tier)."""
    form: dict[str, Any] = {name: None for name in template.fields if "*" not in name}
    form.update(fields)
    context = {
        "form": form,
        "params": dict(params),
        "now": now,
        "updating": updating,
        **(extra or {}),
    }
    try:
        text = _render_text(template, context)
    except (RelayError, SkipDelivery):
        raise
    except Exception as exc:
        line = _template_line(exc, template.path)
        where = f" at line {line}" if line else ""
        # The person reading the answer (a zap builder, the operator in the console) gets
        # words; the Python behind it goes to the process log only, the sender's values masked.
        log.warning("template %s%s failed: %s: %s", template.name, where, type(exc).__name__,
                    mask_private(str(exc), _sent_values(fields)))  # fmt: skip
        raise TemplateProblem(
            f"The relay's template {template.name} has a mistake{where}, so nothing was sent "
            "to PassKit. Ask whoever edits the relay's templates to fix it: the relay's log "
            "says what went wrong."
        ) from exc
    try:
        return _prune(json.loads(text))
    except json.JSONDecodeError as exc:
        raise TemplateProblem(
            f"The relay's template {template.name} has a mistake: what it wrote is not JSON "
            f"(at output line {exc.lineno}, column {exc.colno}), so nothing was sent to "
            "PassKit. Whoever edits the templates should write each value as "
            "{{ form.x|tojson }}, with no quotes around it."
        ) from None


def _render_text(template: RequestTemplate, context: dict[str, Any]) -> str:
    """`template.jinja.render(context)`, as Jinja's own render does it, with the context built
    over the template's plain globals (`jinja_globals`) instead of its ChainMap."""
    jinja, plain = template.jinja, template.jinja_globals
    environment = jinja.environment
    ctx = environment.context_class(environment, {**plain, **context}, jinja.name, jinja.blocks,
                                    globals=plain)  # fmt: skip
    try:
        return environment.concat(jinja.root_render_func(ctx))
    except Exception:  # noqa: BLE001 - re-raised by Jinja, mapped to the template's lines
        environment.handle_exception()
    raise AssertionError("unreachable: handle_exception raises")


def _sent_values(fields: Fields) -> list[str]:
    """What the sender sent, as text, to mask in a log line (one or two characters say
    nothing about a person and would blot out the line's numbers)."""
    values: list[str] = []
    for value in fields.values():
        values += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return [v for v in values if len(v) > 2]

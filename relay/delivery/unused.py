"""Fields a delivery sent that its template does not read.

Every unused field is listed in the answer as `ignored_fields` (old URLs too: it adds to the
answer and refuses nothing). For hooks minted from v2 on, an unused name that is plainly a
misspelling of a field the template reads, when that field was not sent, is refused: a pass
going out without the name or points the zap meant to send is a green step for a wrong result.

"Plainly a misspelling": the received name has five or more characters and, with `_` taken out
of both (so `frist_name`, `Frist Name` and `fristname` read alike), is within Damerau-Levenshtein
distance 2 of the field's name or one of its declared aliases (a swap of two neighbouring
letters counts as one edit: `frist` → `first`). Shorter names are too close to everything.

Aliases (`phone` for `mobile`) are declared in the template's front matter (`aliases = [...]`
under `[fields.mobile]`), never guessed: a v2 hook reads an alias as its field when the field
itself was not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from rapidfuzz.distance import DamerauLevenshtein

from relay.delivery.templating import RequestTemplate
from relay.errors import InvalidField
from relay.forms.fields import Fields

MIN_LENGTH = 5  # received names shorter than this are never taken for a misspelling
MAX_EDITS = 2  # Damerau-Levenshtein distance, on the names without underscores
# What a template's answers below depend on is the names a delivery sent, in their order: kept
# for this many name lists per template (a zap sends the same names every time), for lists of
# at most MEMO_NAMES names.
MEMO_LISTS = 256
MEMO_NAMES = 64
T = TypeVar("T")


def _by_names(
    template: RequestTemplate,
    kind: tuple[object, ...],
    names: tuple[str, ...],
    work: Callable[[], T],
) -> T:
    """`work()` (an answer of this `kind` about these `names`), remembered for `template`."""
    if len(names) > MEMO_NAMES:
        return work()
    memo = template.by_names
    key = (*kind, *names)
    if key in memo:
        found: T = memo[key]
        return found
    if len(memo) >= MEMO_LISTS:
        memo.clear()
    memo[key] = answer = work()
    return answer


def ignored_fields(
    template: RequestTemplate, names: Iterable[str], *, aliases: bool = True
) -> list[str]:
    """The names sent (`names`, as a delivery's fields or its logged request hold them) that
    the template does not read, in arrival order (`aliases`: whether the hook reads declared
    aliases, as hooks minted from v2 on do)."""
    names = tuple(names)
    return list(_by_names(template, ("ignored", aliases), names,
                          lambda: _ignored(template, names, aliases)))  # fmt: skip


def _ignored(template: RequestTemplate, names: tuple[str, ...], aliases: bool) -> tuple[str, ...]:
    read = template.field_names | template.alias_names if aliases else template.field_names
    prefixes = template.field_prefixes
    return tuple(name for name in names if name not in read and not name.startswith(prefixes))


def with_aliases(template: RequestTemplate, fields: Fields) -> Fields:
    """`fields` with each declared alias read as its field, when the field itself was not sent
    (the first alias sent wins); `fields` itself when no alias was sent."""
    names = tuple(fields)
    renames = _by_names(template, ("aliases",), names, lambda: _renames(template, names))
    if not renames:
        return fields
    renamed = dict(fields)
    for alias, name in renames:
        renamed[name] = renamed.pop(alias)
    return renamed


def _renames(template: RequestTemplate, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The (alias, field) renames `with_aliases` makes of a delivery that sent `names`."""
    sent = dict.fromkeys(names)
    renames = []
    for spec in template.fields.values():
        if spec.name in sent:
            continue
        for alias in spec.aliases:
            if alias in sent:
                sent[spec.name] = sent.pop(alias)
                renames.append((alias, spec.name))
                break
    return tuple(renames)


def _squashed(name: str) -> str:
    return name.replace("_", "").casefold()


def misspelling(template: RequestTemplate, fields: Fields) -> tuple[str, str] | None:
    """(the name sent, the field it plainly meant) for the first unused name that is a
    misspelling of a field the template reads which was not sent; None when there is none.
    Of several such fields, the nearest for its length is meant (`piont` is 2 edits from
    both `phone` and `points`: it means points)."""
    names = tuple(fields)
    return _by_names(template, ("misspelling",), names, lambda: _misspelling(template, names))


def _misspelling(template: RequestTemplate, fields: tuple[str, ...]) -> tuple[str, str] | None:
    unsent = [spec for spec in template.fields.values()
              if "*" not in spec.name and spec.name not in fields
              and not any(alias in fields for alias in spec.aliases)]  # fmt: skip
    for name in ignored_fields(template, fields):
        sent = _squashed(name)
        if len(sent) < MIN_LENGTH:
            continue
        near = [(DamerauLevenshtein.normalized_similarity(sent, _squashed(known)), spec.name)
                for spec in unsent for known in (spec.name, *spec.aliases)
                if DamerauLevenshtein.distance(sent, _squashed(known)) <= MAX_EDITS]  # fmt: skip
        if near:
            return name, max(near, key=lambda pair: pair[0])[1]
    return None


def refuse_misspelling(template: RequestTemplate, fields: Fields) -> None:
    """InvalidField naming both when a sent name is plainly a misspelt field (see above)."""
    found = misspelling(template, fields)
    if found is None:
        return
    sent, meant = found
    raise InvalidField(
        f"{sent} is not a field of this hook — did you mean {meant}?",
        field=sent,
        hint=f"Rename the row {sent} to {meant} in Zapier's Data section (or Make's request "
        "body); nothing was sent to PassKit.",
    )

"""Personal data in the store: sealed on the way in, opened on the way out, findable by a blind
index (relay.sealing) and erasable.

A store opened with a `Sealer` (the app's, the commands') seals every column that can hold what
a person sent (payloads, PassKit's answers, error messages, forwarded events, stored answers) and
writes a `person` column: the blind indexes of the emails, external ids and Stripe customer ids
found in the delivery, as " idx1 idx2 " so one LIKE finds a row by any of them.

A store opened without one (a test or a tool reading the file) writes in clear, and reads a
sealed value as None: it sees the metadata, never the data. Rows written before sealing read
as they are.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from relay.jsontext import compact_text
from relay.redact import redact_finding, remember
from relay.sealing import PREFIX, Sealer, SealError

# Keys whose values name a person, compared lower-cased without "_", "-" or spaces: emails,
# external ids (PassKit's and the relay's field) and Stripe's customer ids and emails.
_PERSON_KEYS = frozenset(
    {
        "email",
        "emailaddress",
        "externalid",
        "customer",
        "customerid",
        "customeremail",
        "receiptemail",
    }
)
_NOT_A_LETTER = re.compile(r"[\s_\-]")
# Keys whose values are (parts of) a person's name, compared the same way: the console's
# search finds a person by a whole word of their name through these (name_words).
_NAME_KEYS = frozenset(
    {
        "firstname",
        "lastname",
        "name",
        "fullname",
        "givenname",
        "familyname",
        "surname",
        "forename",
        "displayname",
        "customername",
    }
)
_WORD = re.compile(r"\w+")


def seal_text(sealer: Sealer | None, text: str | None) -> str | None:
    if text is None or sealer is None:
        return text
    return sealer.seal(text)


def open_text(sealer: Sealer | None, stored: str | None) -> str | None:
    """The clear text; None for a sealed value this store cannot open (no key, or its key was
    dropped): the page shows the delivery without it rather than failing."""
    if stored is None or not stored.startswith(PREFIX):
        return stored
    if sealer is None:
        return None
    try:
        return sealer.open(stored)
    except SealError:
        return None


def _encode(value: Any) -> str:
    return compact_text(value, default=str)


def dumps(value: Any) -> str | None:
    if value is None:
        return None
    return _encode(value)


def seal_json(sealer: Sealer | None, value: Any) -> str | None:
    return seal_text(sealer, dumps(value))


def open_json(sealer: Sealer | None, stored: str | None) -> Any:
    text = open_text(sealer, stored)
    return None if text is None else json.loads(text)


# A row's sealed columns sealed as one value: the first column holds BUNDLE + a JSON object of
# every column's value (one Fernet token, not one per column), the others are NULL. Rows sealed
# column by column still open, and a bundle is a sealed value like any other: `relay reencrypt`
# re-seals it whole, and erase's search of unindexed rows reads it as text.
BUNDLE = "columns:"


def seal_columns(sealer: Sealer, values: Mapping[str, Any]) -> dict[str, str | None]:
    """`values` (JSON values by column name) sealed as one value in the first column."""
    columns: dict[str, str | None] = dict.fromkeys(values)
    columns[next(iter(values))] = sealer.seal(BUNDLE + _encode(values))
    return columns


def open_bundle(sealer: Sealer | None, stored: str | None) -> dict[str, Any] | None:
    """The columns a first column sealed by `seal_columns` holds; None when it holds only its
    own value (a row sealed column by column, or in clear) or this store cannot open it."""
    if stored is None or not stored.startswith(PREFIX):
        return None
    text = open_text(sealer, stored)
    if text is None or not text.startswith(BUNDLE):
        return None
    bundle: dict[str, Any] = json.loads(text[len(BUNDLE) :])
    return bundle


def people_in(*values: Any) -> tuple[str, ...]:
    """The identifiers of people in JSON values (the fields sent, PassKit's request, a Stripe
    event, a forwarded event), each once: what a person is later erased by."""
    return _texts_under(values, (_PERSON_KEYS, _identifier))[0]


def name_words(*values: Any) -> tuple[str, ...]:
    """The words of the names in JSON values (first_name, surname, a Stripe customer's name…),
    each once, folded as `words` folds a search: what a person is found by in the console."""
    return _texts_under(values, (_NAME_KEYS, words))[0]


def people_and_names(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`people_in(value)` and `name_words(value)` in one walk (the log takes both of each
    delivery's request and PassKit request)."""
    people, names = _texts_under((value,), (_PERSON_KEYS, _identifier), (_NAME_KEYS, words))
    return people, names


def logged(
    value: Any, *, store_payloads: bool, names: bool = True
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """What the delivery log takes of a JSON value, in one walk: `redact(value,
    store_payloads=…)`, `people_in(value)` and (with `names`) `name_words(value)`."""
    wanted = _PEOPLE_AND_NAMES if names else _PEOPLE
    found: list[dict[str, None]] = [{} for _ in wanted]
    plan = _plan(wanted)
    if not store_payloads:
        _walk_texts(value, plan, found)
        return None, tuple(found[0]), tuple(found[1]) if names else ()

    def find(key: Any, item: Any) -> None:  # what _walk_texts does with each key's item
        if isinstance(item, str):
            for index, take in plan.get(FOLDED.get(key) or _folded_key(str(key)), ()):
                found[index].update(dict.fromkeys(take(item)))
        else:  # masked whole: its texts are still a person's
            _walk_texts(item, plan, found)

    copy = redact_finding(value, find)
    return copy, tuple(found[0]), tuple(found[1]) if names else ()


def _identifier(text: str) -> list[str]:
    return [text.strip()] if text.strip() else []


def _texts_under(
    values: tuple[Any, ...], *wanted: tuple[frozenset[str], Callable[[str], list[str]]]
) -> list[tuple[str, ...]]:
    """For each (keys, take) wanted: what `take` makes of every text under one of `keys`
    (compared lower-cased without "_", "-" or spaces), anywhere in the JSON `values`, each once,
    in order. One walk, whatever the number wanted."""
    found: list[dict[str, None]] = [{} for _ in wanted]
    plan = _plan(wanted)
    for value in values:
        _walk_texts(value, plan, found)
    return [tuple(texts) for texts in found]


Plan = dict[str, tuple[tuple[int, Callable[[str], list[str]]], ...]]


@functools.lru_cache(maxsize=8)  # the module's few `wanted`: worked out once, not per walk
def _plan(wanted: tuple[tuple[frozenset[str], Callable[[str], list[str]]], ...]) -> Plan:
    """Each folded key → which of the wanted it is under (most keys are under none)."""
    plan: Plan = {}
    for index, (keys, take) in enumerate(wanted):
        for key in keys:
            plan[key] = (*plan.get(key, ()), (index, take))
    return plan


def _walk_texts(value: Any, plan: Plan, found: list[dict[str, None]]) -> None:
    # A function of its own, not one nested in _texts_under: a nested function that calls
    # itself is a reference cycle, left for the garbage collector after every delivery.
    if value is None or isinstance(value, int | float):  # before Mapping, an ABC's slow test
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str):
                for index, take in plan.get(FOLDED.get(key) or _folded_key(str(key)), ()):
                    found[index].update(dict.fromkeys(take(item)))
            else:
                _walk_texts(item, plan, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_texts(item, plan, found)


FOLDED: dict[str, str] = {}  # field names folded, as relay.redact.remember keeps them


def _folded_key(key: str) -> str:
    folded = FOLDED.get(key)
    if folded is None:
        folded = remember(FOLDED, key, _NOT_A_LETTER.sub("", key).lower())
    return folded


def words(text: str) -> list[str]:
    """A name's whole words, case and accents folded ("Ana Díaz" → ana, diaz)."""
    # ASCII has no accents to take off (its NFKD form is itself): most names skip the walk.
    plain = (
        text
        if text.isascii()
        else "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    )
    return [w for w in _WORD.findall(plain.casefold()) if len(w) <= 60][:8]


_PEOPLE = ((_PERSON_KEYS, _identifier),)
_PEOPLE_AND_NAMES = ((_PERSON_KEYS, _identifier), (_NAME_KEYS, words))


def name_index(sealer: Sealer, word: str) -> str:
    """A name word's blind index: the word is kept only as this keyed hash, never in clear, and
    hashed apart from identifiers ("name " first), so it never matches an email's index."""
    return sealer.blind(f"name {word}")


def person_column(
    sealer: Sealer | None,
    people: Iterable[str],
    names: Iterable[str] = (),
    known: dict[str, str] | None = None,
) -> str | None:
    """The `person` column: each identifier's blind index under the current key, and each name
    word's (name_index). `known`: the indexes already computed for this batch of rows (a
    delivery's log entry and its stored answers name the same people), filled in; never kept
    beyond the batch (nor is anything else: a person erased must not linger in memory)."""
    if sealer is None:
        return None
    known = {} if known is None else known
    texts = [*people, *(f"name {word}" for word in names)]  # as name_index hashes a word
    indexes: dict[str, None] = {}
    for text in texts:
        if text not in known:
            known[text] = sealer.blind(text)
        indexes[known[text]] = None
    return f" {' '.join(indexes)} " if indexes else None


def person_patterns(sealer: Sealer, identifier: str) -> dict[str, str]:
    """LIKE patterns finding `identifier`'s rows under every key (across a rotation)."""
    return {f"p{i}": f"% {index} %" for i, index in enumerate(sealer.blinds(identifier))}


def person_where(patterns: Mapping[str, str]) -> str:
    return "(" + " OR ".join(f"person LIKE :{name}" for name in patterns) + ")"

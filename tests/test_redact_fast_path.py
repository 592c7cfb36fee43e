"""redact_text's fast path (text that cannot hold a secret skips both regular expressions)
answers exactly what the regular expressions would, on every kind of secret and broken text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.brokentext import mend_text
from relay.redact import _SECRET_SHAPES, MASK, redact_text, secret_key


@pytest.mark.parametrize(
    "text",
    ["ana@example.com", "Ana Díaz", "CRM-1", "", "BeArEr abc.def", "token: bearer xyz",
     "my key sk_live_abc123 here", "rk_test_Zz9", "whsec_abc+/=", "eyJhbGciOi.eyJ1aWQi.sig",
     "x.eJwrzs0.abc", "nul\x00here", "half \ud83d emoji", "kk_ not a key", "plain text."],
)  # fmt: skip
def test_the_fast_path_answers_as_the_regular_expressions_do(text: str) -> None:
    assert redact_text(text) == mend_text(_SECRET_SHAPES.sub(MASK, text))


# Pieces of every secret shape, capitals, accents, the log's "…", a Kelvin sign (which folds
# to k), NUL and a lone surrogate: text the fast path must answer as the expressions do.
_PIECES = st.sampled_from(["eyJ", "hbG", ".", ".eJ", "sk_", "rk_", "live_", "test_", "whsec_",
                           "Bearer ", "bEaReR\t", "abc", "123", "-", "_", "…", "é", "\u212a",
                           "\x00", "\ud83d", " ", "=", "/"])  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(_PIECES, max_size=10).map("".join))
def test_the_fast_path_answers_as_the_expressions_do_on_any_mix(text: str) -> None:
    assert redact_text(text) == mend_text(_SECRET_SHAPES.sub(MASK, text))


def test_remembered_key_names_answer_as_computed_ones() -> None:
    for name in ("Authorization", "api-key", "first_name", "x" * 65 + "token", "email"):
        assert (
            secret_key(name)
            == secret_key(name)
            == any(
                part in name.lower().replace("-", "_")
                for part in ("authorization", "api_key", "token")
            )
        )


# JSON values as the log meets them: names and emails under person and name keys, secrets
# under secret keys (text or not), nesting, lists, numbers, booleans, nulls.
_KEYS = st.sampled_from(["email", "Email-Address", "first_name", "surname", "api_key",
                         "token", "points", "json", "person", "externalId", "x"])  # fmt: skip
_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
    st.sampled_from(["ana@example.com", "Ana Díaz", "Bearer abc.def", "sk_live_x1", "", " "]),
)  # fmt: skip
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_JSON, st.booleans(), st.booleans())
def test_the_log_walks_once_and_finds_what_two_walks_found(value, store_payloads, names):
    from relay.redact import redact
    from relay.store.personal import logged, people_and_names, people_in

    copy, people, found_names = logged(value, store_payloads=store_payloads, names=names)
    assert copy == redact(value, store_payloads=store_payloads)
    if names:
        assert (people, found_names) == people_and_names(value)
    else:
        assert (people, found_names) == (people_in(value), ())


def test_key_names_remembered_by_the_thousand_still_answer_right_and_the_memory_stays_small():
    from relay.redact import REMEMBERED, SECRET_KEYS, redact

    for i in range(REMEMBERED + 10):  # a sender's oddity: a new field name each time
        assert redact({f"field_{i}": "x", f"api-key-{i}": "y"}) == {
            f"field_{i}": "x",
            f"api-key-{i}": MASK,
        }
    assert len(SECRET_KEYS) <= REMEMBERED
    assert secret_key("Authorization") and not secret_key("first_name")

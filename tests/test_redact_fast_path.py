"""redact_text's fast path (text that cannot hold a secret skips both regular expressions)
answers exactly what the regular expressions would, on every kind of secret and broken text."""

from __future__ import annotations

import pytest

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

"""Hook tokens: mint, verify, tamper, rotate."""

import pytest

from relay.access.tokens import Hook, HookSigner, hook_url, redact_token, token_from_url
from relay.errors import InvalidToken

KEY_A = "a-very-long-secret-key-number-one"
KEY_B = "another-long-secret-key-number-two"
HOOK = Hook(id="hk_0123456789", template="member-upsert", params={"program_id": "prog1"})


def test_mint_then_verify_gives_back_the_hook() -> None:
    signer = HookSigner([KEY_A])
    token = signer.mint(HOOK)
    assert signer.verify(token) == HOOK
    # URL-safe: it can sit in a path segment without escaping.
    assert all(c.isalnum() or c in "-_." for c in token)


def test_params_are_readable_but_not_secret() -> None:
    token = HookSigner([KEY_A]).mint(HOOK)
    assert KEY_A not in token


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t[:10],  # cut short when pasting
        lambda t: "x" + t,  # payload changed
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_tampered_tokens_are_refused(tamper) -> None:
    signer = HookSigner([KEY_A])
    token = signer.mint(HOOK)
    with pytest.raises(InvalidToken) as err:
        signer.verify(tamper(token))
    assert err.value.status == 401
    assert err.value.code == "invalid_token"


def test_token_from_another_relay_is_refused() -> None:
    token = HookSigner([KEY_B]).mint(HOOK)
    with pytest.raises(InvalidToken):
        HookSigner([KEY_A]).verify(token)


def test_rotation_first_key_signs_all_keys_verify() -> None:
    old_token = HookSigner([KEY_A]).mint(HOOK)
    rotated = HookSigner([KEY_B, KEY_A])
    assert rotated.verify(old_token) == HOOK  # old URLs keep working during rotation
    new_token = rotated.mint(HOOK)
    assert HookSigner([KEY_B]).verify(new_token) == HOOK  # the first key signs
    with pytest.raises(InvalidToken):
        HookSigner([KEY_A]).verify(new_token)


def test_token_found_in_pasted_urls() -> None:
    token = HookSigner([KEY_A]).mint(HOOK)
    url = hook_url("https://relay.example.com/", token)
    assert url == f"https://relay.example.com/hooks/{token}"
    assert token_from_url(url) == token
    assert token_from_url(url + "/?dry_run=1") == token
    assert token_from_url(f"  {token}  ") == token


def test_redacted_token_is_not_the_token() -> None:
    token = HookSigner([KEY_A]).mint(HOOK)
    shown = redact_token(token)
    assert token not in shown
    assert len(shown) < 16

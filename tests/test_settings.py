"""Settings: every problem reported at once, secrets masked everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.settings import PACKAGE_TEMPLATES, ConfigError, load_settings

from .conftest import BASE_ENV, ROOT


def test_every_problem_is_listed_once_per_line() -> None:
    env = {
        "PORT": "eighty",
        "PASSKIT_REGION": "mars",
        "PASSKIT_API_KEY": "k",
        "DATABASE_URL": "mysql://x",
        "STRIPE_WEBHOOK_SECRET": "sk_live_oops",
        "RELAY_TEMPLATES": "/no/such/folder",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    text = "\n".join(err.value.problems)
    for name in (
        "RELAY_SECRET_KEY",
        "PORT",
        "PASSKIT_REGION",
        "PASSKIT_API_SECRET",
        "DATABASE_URL",
        "STRIPE_WEBHOOK_SECRET",
        "RELAY_TEMPLATES",
    ):
        assert name in text
    assert len(err.value.problems) == 7
    assert "sk_live_oops" not in text  # a mistaken secret is not echoed


def test_secrets_are_masked_in_repr() -> None:
    settings = load_settings(
        {**BASE_ENV, "PASSKIT_TOKEN": "tok-secret-123", "RELAY_ADMIN_PASSWORD": "hunter22"}
    )
    shown = repr(settings) + str(settings)
    for secret in (
        BASE_ENV["RELAY_SECRET_KEY"],
        BASE_ENV["PASSKIT_API_SECRET"],
        "tok-secret-123",
        "hunter22",
    ):
        assert secret not in shown
    assert settings.passkit_api_secret is not None
    assert settings.passkit_api_secret.reveal() == BASE_ENV["PASSKIT_API_SECRET"]


def test_region_picks_api_and_pass_page_hosts() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "PASSKIT_API_URL"}
    eu = load_settings(env)
    us = load_settings({**env, "PASSKIT_REGION": "pub2"})
    assert (eu.passkit_api_url, eu.passkit_pass_url) == (
        "https://api.pub1.passkit.io",
        "https://pub1.pskt.io",
    )
    assert (us.passkit_api_url, us.passkit_pass_url) == (
        "https://api.pub2.passkit.io",
        "https://pub2.pskt.io",
    )


def test_rotation_keys_and_defaults() -> None:
    settings = load_settings(
        {"RELAY_SECRET_KEY": "new-key-0123456789, old-key-0123456789", "PORT": "5000"}
    )
    assert [k.reveal() for k in settings.secret_keys] == [
        "new-key-0123456789",
        "old-key-0123456789",
    ]
    assert settings.public_url == "http://localhost:5000"
    assert not settings.public_url_set  # the console mints at the browser's address instead
    assert settings.database_url.reveal() == "sqlite:///relay.db"
    assert settings.warnings  # no PassKit credentials: dry runs only
    assert not settings.has_passkit_credentials


def test_templates_folder_defaults(tmp_path: Path) -> None:
    env = {"RELAY_SECRET_KEY": "k" * 20}
    assert load_settings(env, cwd=tmp_path).templates_dir == PACKAGE_TEMPLATES
    (tmp_path / "templates").mkdir()
    assert load_settings(env, cwd=tmp_path).templates_dir == tmp_path / "templates"
    assert load_settings(env, cwd=ROOT).templates_dir == ROOT / "templates"


def test_public_url_set_only_when_given() -> None:
    given = load_settings({**BASE_ENV, "RELAY_PUBLIC_URL": " https://passes.example.net/ "})
    assert given.public_url_set and given.public_url == "https://passes.example.net"
    unset = {k: v for k, v in BASE_ENV.items() if k != "RELAY_PUBLIC_URL"}
    for env in (unset, {**unset, "RELAY_PUBLIC_URL": ""}):
        settings = load_settings(env)
        assert not settings.public_url_set and settings.public_url == "http://localhost:8000"

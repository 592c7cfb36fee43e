"""Samples for a PassKit events URL (relay.events.sample): `relay events-sample` and the
console's "Send a sample" post, through the outbox and the forwarder, a flat event with every
key a real one of its family has, `meta_*` copied from the last real event, and sample: true.
Real relay, real receiver, real sandbox over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.app import create_app
from relay.commands.cli import main
from relay.events.flatten import RECORD_KEYS

from .conftest import BASE_ENV, make_settings
from .servers import serve_in_thread
from .test_event_families import body, new_events_path
from .test_passkit_events import (  # noqa: F401 - receiver is a fixture
    ADMIN_PASSWORD,
    LOOPBACK,
    WEBHOOK_SECRET,
    Receiver,
    enrol_and_install_at_the_sandbox,
    receiver,
    send,
    wait_for,
)


@pytest.fixture
def relay_db(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A relay and the environment a `relay` command run beside it would have."""
    env = BASE_ENV | {"DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
                      "PASSKIT_WEBHOOK_SECRET": WEBHOOK_SECRET, "RELAY_FORWARD_RETRY": "0.2",
                      "PASSKIT_API_URL": "http://127.0.0.1:9",
                      "RELAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                      "RELAY_ALLOW_URLS": LOOPBACK}  # the receiver is on loopback  # fmt: skip
    with serve_in_thread(create_app(make_settings(**env)), lifespan="on") as url:
        yield url, env


def test_a_cli_sample_has_the_keys_of_a_real_event_and_its_custom_fields(
    relay_db: tuple[str, dict[str, str]],
    receiver: Receiver,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    relay, env = relay_db
    hook_url = relay + new_events_path(receiver.url, events="installed")
    enrol_and_install_at_the_sandbox(hook_url, lambda: len(receiver.got) == 1,
                                     points=12, metaData={"lockerNumber": "17"})  # fmt: skip
    real = receiver.got[0]
    assert real["sample"] is False and real["meta_lockerNumber"] == "17"
    assert main(["events-sample", hook_url], env=env) == 0
    assert "sample “installed” sent to 127.0.0.1 (it answered 200)" in capsys.readouterr().out
    sample = receiver.got[1]
    assert sample["sample"] is True and sample["event"] == "installed"
    assert set(real) <= set(sample)  # every key the real one has …
    assert {k for k in sample if k.startswith("meta_")} == {"meta_lockerNumber"}  # … its fields
    assert type(sample["points"]) is type(real["points"]) is int
    assert sample["event_id"].startswith("smp_") and sample["event_id"] != real["event_id"]


@pytest.mark.parametrize("event", ["installed", "member.enrolled", "coupon.redeemed"])
def test_a_sample_has_the_same_keys_as_a_full_real_event_of_its_family(
    relay_db: tuple[str, dict[str, str]],
    receiver: Receiver,  # noqa: F811
    event: str,
) -> None:
    relay, env = relay_db
    hook_url = relay + new_events_path(receiver.url)
    coupon = event.startswith("coupon.")
    record = {name: "7" if "oints" in name else "x" for name in RECORD_KEYS}
    if coupon:  # a coupon's pass carries no membership fields
        record = {k: v for k, v in record.items() if not k.startswith("members.")}
    record["meta.favouriteClass"] = "Spin"
    metadata = {"status": "PASS_INSTALLED", "firstInstalledAt": "2026-01-01T00:00:00Z",
                "lastInstalledAt": "2026-02-01T00:00:00Z",
                "lastUninstalledAt": "2026-01-15T00:00:00Z",
                "lifecycleEvents": ["INSTALLED_APPLE"]}  # fmt: skip
    name = {"installed": "PASS_EVENT_INSTALLED", "member.enrolled": "MEMBER_EVENT_ENROLLED",
            "coupon.redeemed": "COUPON_EVENT_REDEEMED"}[event]  # fmt: skip
    full = body(name, recordData=record, metadata=metadata,
                protocol="SINGLE_USE_COUPON" if coupon else "MEMBERSHIP")  # fmt: skip
    assert send(hook_url, body=full).status_code == 200
    wait_for(lambda: len(receiver.got) == 1)
    assert main(["events-sample", hook_url, "--event", event], env=env) == 0
    real, sample = receiver.got
    assert set(real) == set(sample)
    assert {k: type(v) for k, v in real.items()} == {k: type(v) for k, v in sample.items()}


def test_a_sample_of_an_event_the_url_does_not_forward_is_refused(
    relay_db: tuple[str, dict[str, str]],
    receiver: Receiver,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    relay, env = relay_db
    hook_url = relay + new_events_path(receiver.url, events="uninstalled")
    assert main(["events-sample", hook_url, "--event", "installed"], env=env) == 1
    assert "this URL forwards uninstalled" in capsys.readouterr().err
    assert main(["events-sample", "hk_0123456789"], env=env) == 1
    time.sleep(0.3)
    assert receiver.got == []

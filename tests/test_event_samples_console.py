"""The console's "Send a sample" on a PassKit events hook's page (relay.admin.hook_samples): it
asks first (the sample reaches the live zap), then sends through the outbox; the page says when
PassKit's last real event came. Real relay and receiver over HTTP."""

from __future__ import annotations

import re

import httpx

from .test_event_samples import relay_db  # noqa: F401 - a fixture
from .test_passkit_events import (  # noqa: F401 - receiver is a fixture
    ADMIN_PASSWORD,
    Receiver,
    receiver,
    send,
    wait_for,
)


def login(console: httpx.Client) -> None:
    form = console.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    console.post("/admin/login", data={"csrf": csrf.group(1), "password": ADMIN_PASSWORD})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_the_console_sends_a_sample_after_asking_and_says_when_the_last_event_came(
    relay_db: tuple[str, dict[str, str]],  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    relay, _ = relay_db
    with httpx.Client(base_url=relay, timeout=10) as console:
        login(console)
        new = console.get("/admin/hooks/new?template=passkit-events")
        made = console.post("/admin/hooks/new", data={
            "csrf": csrf_of(new), "template": "passkit-events", "param:forward_to": receiver.url,
            "label": "Wallet adds"})  # fmt: skip
        assert made.status_code == 303, made.text
        hook_page = console.get(made.headers["location"])
        hook_id = re.search(r"/admin/hooks/(hk_[0-9a-f]+)", made.headers["location"])
        assert hook_id
        assert "No event from PassKit yet" in hook_page.text
        assert "Send a sample" in hook_page.text
        asking = console.get(f"/admin/hooks/{hook_id.group(1)}/sample")
        assert "Send a sample to 127.0.0.1?" in asking.text
        assert receiver.got == []  # asking sends nothing
        sent = console.post(f"/admin/hooks/{hook_id.group(1)}/sample",
                            data={"csrf": csrf_of(asking), "event": "installed"})  # fmt: skip
        assert sent.status_code == 303
        assert "Sample “installed” sent to 127.0.0.1" in console.get(sent.headers["location"]).text
        wait_for(lambda: receiver.got)
        assert receiver.got[0]["sample"] is True
        url = re.search(r'<code id="minted-url">[^<]*?(/passkit/[^<]+)</code>', hook_page.text)
        assert url
        assert send(relay + url.group(1)).status_code == 200  # a real event now
        wait_for(lambda: len(receiver.got) == 2)
        again = console.get(f"/admin/hooks/{hook_id.group(1)}")
        assert "The last event from PassKit came at" in again.text
        assert "Pass installed by Mara Quist" in again.text

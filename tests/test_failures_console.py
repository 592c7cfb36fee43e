"""Failures that can be fixed, end to end: the relay and the PassKit sandbox on real servers,
the console driven over HTTP as the operator's browser would. Failures group by cause with the
fix in words; Edit and resend sends corrected fields through the same pipeline; Replay is
offered (and run) only where sending the same fields again can change the outcome."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.access.tokens import Hook, HookSigner
from relay.sandbox import State
from relay.sandbox.state import DEMO_PROGRAM_ID
from relay.sealing import Sealer
from relay.store import DeliveryRecord, HookRecord, open_store

from .conftest import SECRET_KEY
from .servers import relay_on_sandbox, sandbox  # noqa: F401  (the sandbox fixture)

SEALER = Sealer.from_secrets([SECRET_KEY])  # the relay's: the log's payloads are sealed

PASSWORD = "correct horse battery staple"
HOOK = Hook("hk_gymfront0001", "member-upsert", {"program_id": DEMO_PROGRAM_ID, "tier_id": "base"})


def run(coroutine: Any) -> Any:
    """Run `coroutine` on its own loop in a thread (Playwright's sync API holds this one's)."""
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, coroutine).result()


def register(folder: Path, *records: DeliveryRecord) -> None:
    """The hook in the relay's registry (as the console's mint puts it), and any `records`
    written to its delivery log, through the store the relay itself uses."""

    async def go() -> None:
        store = await open_store(f"sqlite:///{folder / 'relay.db'}", sealer=SEALER)
        try:
            hook = HookRecord(HOOK.id, HOOK.template, dict(HOOK.params),
                              label="Front desk sign-ups", created_at=1.0)  # fmt: skip
            await store.add_hook(hook)
            for record in records:
                await store.record_delivery(record)
        finally:
            await store.close()

    run(go())


def deliveries(folder: Path) -> list[DeliveryRecord]:
    async def go() -> list[DeliveryRecord]:
        store = await open_store(f"sqlite:///{folder / 'relay.db'}", sealer=SEALER)
        try:
            return await store.list_deliveries(limit=100)
        finally:
            await store.close()

    return list(run(go()))


SANDBOXES: dict[int, str] = {}


def sandbox_address(relay: tuple[str, State, Path]) -> str:
    return SANDBOXES[id(relay[1])]


@pytest.fixture
def relay(sandbox: tuple[str, State], tmp_path: Path) -> Iterator[tuple[str, State, Path]]:  # noqa: F811
    SANDBOXES[id(sandbox[1])] = sandbox[0]
    with relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD,
                          RELAY_RETRY_BUDGET="1") as url:  # fmt: skip
        register(tmp_path)
        yield url, sandbox[1], tmp_path


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no csrf field"
    return found.group(1)


@pytest.fixture
def console(relay: tuple[str, State, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay[0], timeout=30) as client:
        login = client.get("/admin/login")
        signed = client.post("/admin/login", data={"csrf": csrf(login.text), "password": PASSWORD})
        assert signed.status_code == 303
        yield client


def hook_path() -> str:
    return "/hooks/" + HookSigner([SECRET_KEY]).mint(HOOK)


def text_of(html: str) -> str:
    """The page's words as a person reads them (its main part): tags dropped, spaces collapsed."""
    main = re.search(r"<main.*?</main>", html, re.S)
    text = re.sub(r"<[^>]+>", " ", main.group(0) if main else html)
    return " ".join(text.replace("&#39;", "'").replace("&amp;", "&").split())


def test_three_failures_group_into_one_cause_then_edit_and_resend_succeeds(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    _, state, folder = relay
    for _ in range(3):
        zap = {"external_id": "HS-4242", "email": "mara@example.com", "first_name": "Mara",
               "points": "lots"}  # fmt: skip
        assert console.post(hook_path(), data=zap).status_code == 422
    console.post(hook_path(), data={"external_id": "HS-1", "points": "5"})  # email missing

    page = console.get("/admin/failures")
    assert page.status_code == 200
    words = text_of(page.text)
    assert page.text.count('class="card failure-group"') == 2  # points ×3, email ×1
    assert "3 open failures" in words and "1 open failure " in words
    assert "Hook Front desk sign-ups" in words and "Who Mara" in words
    assert re.search(r"<h2[^>]*>Points is not a number</h2>", page.text)  # the cause, no fix
    assert "The email is missing" in words
    assert "Fix: Send a number in Points." in words
    assert "Map Email in the zap's Data rows" in words
    single = page.text.split("The email is missing")[1].split("</section>")[0]
    assert len(re.findall(r'href="/admin/deliveries/dl_\w+"', single)) == 1  # linked once
    assert "Error" not in words.split("Technical details")[0]  # codes only under the details
    group = re.search(r'href="(/admin/failures/group\?[^"]*field=points[^"]*)"', page.text)
    assert group
    listed = console.get(group.group(1).replace("&amp;", "&"))
    assert listed.text.count('/edit">Edit and resend') == 3

    failed = [d for d in deliveries(folder) if d.error_field == "points"]
    assert len(failed) == 3 and {d.error_code for d in failed} == {"invalid_field"}
    newest = failed[0]
    detail = console.get(f"/admin/deliveries/{newest.id}")
    assert f"/deliveries/{newest.id}/replay" not in detail.text  # no Replay button…
    assert "No Replay: Points would still be “lots”" in text_of(detail.text)  # …and why not
    refused = console.post(f"/admin/deliveries/{newest.id}/replay",
                           data={"csrf": csrf(detail.text)})  # fmt: skip
    assert refused.status_code == 409 and "would still be" in refused.text
    assert len(deliveries(folder)) == 4  # nothing was sent

    form = console.get(f"/admin/deliveries/{newest.id}/edit")
    assert form.status_code == 200
    inputs = re.findall(r'<input id="e-\d+" name="field:([^"]+)" value="([^"]*)"', form.text)
    assert inputs[0] == ("points", "lots")  # the failing field first…
    assert re.search(r'name="field:points"[^>]*aria-invalid="true"', form.text)  # …and marked
    assert ("email", "mara@example.com") in inputs and ("birthday", "") in inputs
    assert '>Points <span class="flag">the problem is here</span>' in form.text
    sent = {f"field:{name}": value for name, value in inputs} | {"field:points": "30"}
    resent = console.post(f"/admin/deliveries/{newest.id}/edit",
                          data={"csrf": csrf(form.text), **sent})  # fmt: skip
    assert resent.status_code == 303
    new_id = resent.headers["location"].rsplit("/", 1)[1]
    shown = console.get(resent.headers["location"])
    assert shown.status_code == 200 and newest.id in shown.text  # links back to the old one
    [new] = [d for d in deliveries(folder) if d.id == new_id]
    assert (new.outcome, new.replay_of) == ("ok", newest.id)
    assert new.request["points"] == "30" and "birthday" not in new.request  # blanks left out
    [member] = state.members.values()
    assert member["externalId"] == "HS-4242" and member["points"] == 30
    # Fixed: the person's three failures (no idempotency key: the same person on the same hook)
    # leave the to-do list; the original says what fixed it and no longer offers Replay or Edit.
    after = text_of(console.get("/admin/failures").text)
    assert "Points" not in after and "1 open failure " in after
    old = console.get(f"/admin/deliveries/{newest.id}")
    assert "Fixed by a later delivery that worked" in text_of(old.text)
    assert f'href="/admin/deliveries/{new_id}"' in old.text
    assert "/edit" not in old.text and "/replay" not in old.text
    edit = console.get(f"/admin/deliveries/{newest.id}/edit")
    assert (edit.status_code, edit.headers["location"]) == (303, f"/admin/deliveries/{newest.id}")


def test_a_passkit_503_offers_replay_and_replays_to_success(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    _, state, folder = relay
    faults = f"{sandbox_address(relay)}/_sandbox/faults"
    assert httpx.post(faults, json={"rate_503": 1.0}).status_code == 200
    zap = {"external_id": "HS-7", "email": "jo@example.com", "points": "10"}
    answer = console.post(hook_path(), data=zap)
    assert answer.status_code == 503
    [failed] = deliveries(folder)
    assert failed.error_code == "passkit_unavailable"
    detail = console.get(f"/admin/deliveries/{failed.id}")
    words = text_of(detail.text)
    assert "No Replay" not in words
    assert f'action="/admin/deliveries/{failed.id}/replay"' in detail.text
    page = text_of(console.get("/admin/failures").text)
    assert "PassKit was busy or down" in page and "Nothing to change: PassKit was busy" in page

    assert httpx.post(faults, json={"rate_503": 0.0}).status_code == 200  # PassKit is back
    replayed = console.post(f"/admin/deliveries/{failed.id}/replay",
                            data={"csrf": csrf(detail.text)})  # fmt: skip
    assert replayed.status_code == 303
    [new, old] = deliveries(folder)
    assert (new.outcome, new.replay_of) == ("ok", failed.id)
    assert [m["externalId"] for m in state.members.values()] == ["HS-7"]
    assert old.resolved_by == new.id  # fixed by its replay: off the to-do list
    assert "Nothing to fix" in text_of(console.get("/admin/failures").text)
    assert "Fixed by" in text_of(console.get(f"/admin/deliveries/{failed.id}").text)


def test_what_cannot_be_edited_says_why(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    _, _, folder = relay
    base = DeliveryRecord(at=2_000_000_000.0, source="hook", hook_id=HOOK.id,
                          template=HOOK.template, operation="members.upsert", outcome="failed",
                          status=422, latency_ms=3.0, request_id="req_x",
                          error_code="missing_field", error_field="email",
                          error_message="email is required but was not sent (got: [redacted]).",
                          id="dl_unlogged0001")  # fmt: skip
    stripe = DeliveryRecord(at=2_000_000_001.0, source="stripe", hook_id=HOOK.id,
                            template="stripe/invoice.paid", operation="members.upsert",
                            outcome="failed", status=200, latency_ms=3.0, request_id="req_y",
                            error_code="passkit_rejected", request={"id": "evt_1"},
                            id="dl_stripe000001")  # fmt: skip
    register(folder, base, stripe)

    unlogged = console.get("/admin/deliveries/dl_unlogged0001/edit")
    assert "was not logged" in text_of(unlogged.text) and 'name="field:' not in unlogged.text
    detail = text_of(console.get("/admin/deliveries/dl_unlogged0001").text)
    assert "No Replay" in detail and "not logged" in detail
    from_stripe = console.get("/admin/deliveries/dl_stripe000001/edit")
    assert "Stripe's event is the source" in text_of(from_stripe.text)
    assert 'name="field:' not in from_stripe.text
    posted = console.post("/admin/deliveries/dl_stripe000001/edit",
                          data={"csrf": csrf(from_stripe.text), "field:id": "evt_2"})  # fmt: skip
    assert posted.status_code == 200 and len(deliveries(folder)) == 2  # nothing sent


def test_replay_all_on_a_busy_group_asks_first_then_says_one_line_per_delivery(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    _, state, folder = relay
    now = time.time()
    busy = [DeliveryRecord(at=now - 60 + n, source="hook", hook_id=HOOK.id, template=HOOK.template,
                           operation="members.upsert", outcome="failed", status=503,
                           latency_ms=1.0, request_id=f"req_b{n}", error_code="passkit_busy",
                           request={"external_id": f"HS-{n}", "email": f"m{n}@example.com",
                                    "first_name": name},
                           id=f"dl_busy00000{n}")
            for n, name in enumerate(("Ana", "Bo"))]  # fmt: skip
    points = DeliveryRecord(at=now - 10, source="hook", hook_id=HOOK.id, template=HOOK.template,
                            operation="members.upsert", outcome="failed", status=422,
                            latency_ms=1.0, request_id="req_p", error_code="invalid_field",
                            error_field="points", request={"external_id": "HS-9", "points": "x"},
                            id="dl_points000001")  # fmt: skip
    register(folder, *busy, points)
    page = console.get("/admin/failures")
    assert page.text.count('action="/admin/failures/replay-all"') == 1  # busy only, not points
    ask = console.post("/admin/failures/replay-all", data={"csrf": csrf(page.text),
                       "error": "passkit_busy", "field": ""})  # fmt: skip
    assert ask.status_code == 200 and "Replay 2 deliveries?" in text_of(ask.text)
    assert len(deliveries(folder)) == 3 and not state.members  # nothing sent before the yes
    done = console.post("/admin/failures/replay-all", data={"csrf": csrf(ask.text),
                        "error": "passkit_busy", "field": "", "confirmed": "yes"})  # fmt: skip
    assert done.status_code == 303 and "/admin/failures/replayed?" in done.headers["location"]
    result = console.get(done.headers["location"])
    words = text_of(result.text)
    assert words.count("Worked") == 2 and "Ana" in words and "Bo" in words
    assert sorted(m["externalId"] for m in state.members.values()) == ["HS-0", "HS-1"]
    assert len(console.get(done.headers["location"]).text) and len(deliveries(folder)) == 5
    # A points failure cannot be replayed in bulk: refused, nothing sent.
    refused = console.post("/admin/failures/replay-all", data={"csrf": csrf(page.text),
                           "error": "invalid_field", "field": "points",
                           "confirmed": "yes"})  # fmt: skip
    assert refused.status_code == 409 and len(deliveries(folder)) == 5
    # Dismiss takes the last one off the list without sending anything.
    dismissed = console.post("/admin/deliveries/dl_points000001/dismiss",
                             data={"csrf": csrf(page.text)})  # fmt: skip
    assert dismissed.status_code == 303
    assert "Dismissed" in text_of(console.get("/admin/deliveries/dl_points000001").text)
    assert "Nothing to fix" in text_of(console.get("/admin/failures").text)
    assert len(deliveries(folder)) == 5


def test_a_get_on_a_post_only_address_goes_to_its_page_not_json(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    expected = {
        "/admin/deliveries/dl_x1/replay": "/admin/deliveries/dl_x1",
        "/admin/deliveries/dl_x1/pass": "/admin/deliveries/dl_x1",
        "/admin/deliveries/dl_x1/dismiss": "/admin/deliveries/dl_x1",
        "/admin/failures/replay-all": "/admin/failures",
        "/admin/events/ev_1/resend": "/admin/events",
        "/admin/logout": "/admin",
    }
    for address, page in expected.items():
        opened = console.get(address)
        assert (opened.status_code, opened.headers["location"]) == (303, page), address
        assert "method_not_allowed" not in opened.text


def test_the_fix_names_the_value_the_zap_sent_and_the_valid_choices(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    _, _, folder = relay
    zap = {"external_id": "HS-5", "email": "ana@example.com", "tier": "platinum"}
    assert console.post(hook_path(), data=zap).status_code == 404
    [failed] = deliveries(folder)
    words = text_of(console.get(f"/admin/deliveries/{failed.id}").text)
    assert "the zap sent Tier “platinum”, and PassKit has no tier with that ID" in words
    assert ("Sandbox Coffee Club has Base, Silver and Gold: fix the zap's Tier mapping, or use "
            "Edit and resend.") in words  # fmt: skip
    failures = text_of(console.get("/admin/failures").text)  # the account is cached by now
    assert "The zap sent Tier “platinum”" in failures and "has Base, Silver and Gold" in failures


def test_with_payload_logging_off_the_fix_says_the_value_was_not_kept(
    sandbox: tuple[str, State],  # noqa: F811
    tmp_path: Path,
) -> None:
    with relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD,
                          RELAY_LOG_PAYLOADS="false") as url:  # fmt: skip
        register(tmp_path)
        with httpx.Client(base_url=url, timeout=30) as client:
            login = client.get("/admin/login")
            client.post("/admin/login", data={"csrf": csrf(login.text), "password": PASSWORD})
            zap = {"external_id": "HS-6", "email": "bo@example.com", "points": "lots"}
            assert client.post(hook_path(), data=zap).status_code == 422
            [failed] = deliveries(tmp_path)
            words = text_of(client.get(f"/admin/deliveries/{failed.id}").text)
            assert "points is not a number (what the zap sent was not kept" in words
            assert "lots" not in words


def test_the_public_hook_page_names_ids_puts_the_test_first_and_lists_every_problem(
    relay: tuple[str, State, Path],
) -> None:
    url = relay[0] + hook_path()
    html = {"Accept": "text/html"}
    shown = httpx.get(url, headers=html, timeout=30).text
    settings = text_of(shown.split('<div class="card">')[0])
    assert "Sandbox Coffee Club" in settings and "Base" in settings  # names, ids beside
    assert shown.index('id="test"') < shown.index("curl")  # the test form before the curl line
    tried = httpx.post(
        f"{url}/try",
        headers=html,
        timeout=30,
        data={"external_id": "C1", "points": "lots", "birthday": "someday"},
    )
    words = text_of(tried.text)
    assert "Email is needed." in words and "Points " in words and "Birthday " in words
    for box in ("email", "points", "birthday"):
        assert re.search(rf'name="{box}"[^>]*aria-invalid="true"', tried.text), box


def test_the_stripe_hook_page_asks_for_nothing_the_console_cannot_do(
    relay: tuple[str, State, Path], console: httpx.Client
) -> None:
    async def add() -> None:
        store = await open_store(f"sqlite:///{relay[2] / 'relay.db'}", sealer=SEALER)
        try:
            await store.add_hook(HookRecord("hk_stripe00001", "stripe",
                                            {"program_id": DEMO_PROGRAM_ID, "tier_id": "base"},
                                            label="Stripe payments", created_at=2.0))  # fmt: skip
        finally:
            await store.close()

    run(add())
    words = text_of(console.get("/admin/hooks/hk_stripe00001").text)
    assert "Put it only in Stripe's dashboard" in words and "your zap" not in words
    assert "give it to whoever runs the relay" in words and "this console cannot change" in words
    steps = words.split("Stripe In Stripe's dashboard")[-1]
    assert steps.index("STRIPE_WEBHOOK_SECRET") > steps.index("Technical detail")

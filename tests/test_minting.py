"""Hook settings checked when a URL is minted (`relay url`, the console), by each template's
declaration of its params' kinds; a hook minted before that answers 422 hook_misconfigured, and
`relay check` lists it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from relay.access.tokens import HookSigner, token_from_url
from relay.delivery.templating import ParamProblem, ParamSpec, TemplateLibrary, check_param
from relay.hooks.minting import MintError, endpoint, mint
from relay.sandbox import DEMO_PROGRAM_ID, State
from relay.settings import templates_dir
from relay.store import HookRecord, Store, open_store

from .conftest import BASE_ENV, ROOT, SECRET_KEY, make_settings
from .conftest import mint as mint_path
from .servers import relay_on_sandbox
from .test_admin import PASSWORD, sign_in, token_in
from .test_cli import run

PROGRAM = "3iGxtXJd7x9fU2yYWcdBvQ"  # 22 letters and digits, as PassKit's ids
SANDBOX_PROGRAM = "SandboxProgram00000001"  # the sandbox's demo ids are 22 characters too
PRICE_TIERS = "price_1=gold, price_2=silver"
LIBRARY = TemplateLibrary(templates_dir({}, ROOT))
COUNTRY = ParamSpec("country", kind="country")
DATE_ORDER = ParamSpec("date_order", kind="choice", choices=("DMY", "MDY"))


@pytest.mark.parametrize(
    ("spec", "value", "stored"),
    [
        (COUNTRY, "GB", "GB"),
        (COUNTRY, "us", "US"),
        (COUNTRY, "UK", "UK"),
        (COUNTRY, "44", "44"),
        (COUNTRY, "+44", "+44"),
        (DATE_ORDER, "mdy", "MDY"),
        (DATE_ORDER, "DMY", "DMY"),
        (ParamSpec("program_id", kind="passkit_id"), PROGRAM, PROGRAM),
        (ParamSpec("program_id", kind="passkit_id"), SANDBOX_PROGRAM, SANDBOX_PROGRAM),
        (ParamSpec("tier_id", kind="tier_id"), "gold", "gold"),
        (ParamSpec("currency", kind="currency"), "eur", "EUR"),
        (ParamSpec("tier_for_price", kind="price_tiers"), PRICE_TIERS, PRICE_TIERS),
    ],
)  # fmt: skip
def test_settings_its_kind_accepts_are_stored_normalised(
    spec: ParamSpec, value: str, stored: str
) -> None:
    assert check_param(spec, value) == stored


@pytest.mark.parametrize(
    ("spec", "value", "says"),
    [
        (COUNTRY, "USA", "country 'USA' is not a country the phone library knows: use an ISO "
                         "code such as US or GB"),
        (DATE_ORDER, "dd/mm", "date_order 'dd/mm' must be DMY or MDY"),
        (ParamSpec("size", kind="choice", choices=("S", "M", "L")), "XL", "must be S, M or L"),
        (ParamSpec("program_id", kind="passkit_id"), "p1", "22 letters and digits"),
        (ParamSpec("tier_id", kind="tier_id"), "gold plus", "no spaces"),
        (ParamSpec("currency", kind="currency"), "pounds", "GBP, USD or EUR"),
        (ParamSpec("tier_for_price", kind="price_tiers"), "gold", "price_1AbC=gold"),
    ],
)  # fmt: skip
def test_settings_its_kind_refuses_say_what_is_valid(spec: ParamSpec, value: str, says: str):
    with pytest.raises(ParamProblem, match=says.replace("(", r"\(")) as problem:
        check_param(spec, value)
    assert problem.value.name == spec.name


def test_kinds_come_from_front_matter_or_well_known_names(tmp_path: Path) -> None:
    upsert = LIBRARY.templates["member-upsert"].params
    assert (upsert["country"].kind, upsert["date_order"].choices) == ("country", ("DMY", "MDY"))
    assert (upsert["program_id"].kind, upsert["tier_id"].kind) == ("passkit_id", "tier_id")
    head = '{#---\noperation = "members.lookup"\nsummary = "t"\n'
    (tmp_path / "declared.json.j2").write_text(
        head + '[params]\nprogram_id = "inferred"\n[params.size]\nkind = "choice"\n'
        'choices = ["S", "M"]\ndefault = "M"\n[params.country]\nkind = "text"\n---#}\n{}\n'
    )
    (tmp_path / "unknown-kind.json.j2").write_text(head + '[params.x]\nkind = "colour"\n---#}\n{}')
    (tmp_path / "no-choices.json.j2").write_text(head + '[params.x]\nkind = "choice"\n---#}\n{}')
    (tmp_path / "bad-default.json.j2").write_text(
        head + '[params.date_order]\ndefault = "YMD"\n---#}\n{}'
    )
    library = TemplateLibrary(tmp_path)
    params = library.templates["declared"].params
    assert params["program_id"].kind == "passkit_id"
    assert (params["size"].kind, params["size"].choices) == ("choice", ("S", "M"))
    assert params["country"].kind == "text"  # declared: no name-based guess
    problems = "\n".join(library.problems)
    assert "template unknown-kind: param x: kind 'colour' is not one of: text, country" in problems
    assert "template no-choices: param x: a list of choices" in problems
    assert "template bad-default: param date_order's default: date_order 'YMD' must be" in problems


def test_minting_refuses_every_wrong_setting_at_once() -> None:
    signer = HookSigner([SECRET_KEY])
    given = {"program_id": "p1", "tier_id": "base", "country": "USA", "date_order": "dd/mm"}
    with pytest.raises(MintError) as refused:
        mint(signer, LIBRARY, "member-upsert", given, "https://relay.example.com")
    assert [p.split(" ")[0] for p in refused.value.problems] == [
        "program_id",
        "country",
        "date_order",
    ]
    settings = {**given, "program_id": PROGRAM, "country": "us", "date_order": "mdy"}
    hook, _, _ = mint(signer, LIBRARY, "member-upsert", settings, "https://relay.example.com")
    assert hook.params == {**settings, "country": "US", "date_order": "MDY", "v": "2"}
    assert endpoint(LIBRARY, "stripe").params["tier_for_price"].kind == "price_tiers"


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("country=USA", "relay: country 'USA' is not a country the phone library knows: use an "
                        "ISO code such as US or GB"),
        ("date_order=dd/mm", "relay: date_order 'dd/mm' must be DMY or MDY"),
    ],
)  # fmt: skip
def test_relay_url_refuses_a_wrong_setting_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str], setting: str, says: str
) -> None:
    code, out, err = run(capsys, "url", "member-upsert", "--param", f"program_id={PROGRAM}",
                         "--param", "tier_id=base", "--param", setting)  # fmt: skip
    assert code == 1 and says in err.splitlines() and out == ""


def test_relay_url_stores_us_settings_upper_case_and_takes_offline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "url", "member-upsert", "--param", f"program_id={PROGRAM}",
                         "--param", "tier_id=base", "--param", "country=us",
                         "--param", "date_order=mdy", "--offline")  # fmt: skip
    assert code == 0 and "--offline" in err and "not looked up at PassKit" in err
    hook = HookSigner([SECRET_KEY]).verify(token_from_url(out.strip().splitlines()[-1]))
    assert (hook.params["country"], hook.params["date_order"]) == ("US", "MDY")


@pytest.fixture
def admin(make_client: Callable[..., httpx.AsyncClient], store: Store) -> httpx.AsyncClient:
    return make_client(make_settings(RELAY_ADMIN_PASSWORD=PASSWORD), store=store)


@pytest.mark.anyio
async def test_console_refuses_a_wrong_setting_with_a_422_listing_the_valid_ones(
    admin: httpx.AsyncClient, store: Store
) -> None:
    await sign_in(admin)
    form = await admin.get("/admin/hooks/new?template=member-enrol")
    data = {"csrf": token_in(form.text), "template": "member-enrol", "param:tier_id": "base",
            "param:program_id": PROGRAM, "param:country": "USA",
            "param:date_order": "dd/mm"}  # fmt: skip
    refused = await admin.post("/admin/hooks/new", data=data)
    assert refused.status_code == 422
    assert "use an ISO code such as US or GB" in refused.text
    assert "Date order &#39;dd/mm&#39; must be DMY or MDY" in refused.text  # beside its field
    assert await store.list_hooks() == []
    data |= {"param:country": "US", "param:date_order": "mdy"}
    minted = await admin.post("/admin/hooks/new", data=data)
    assert minted.status_code == 303
    [hook] = await store.list_hooks()
    assert (hook.params["country"], hook.params["date_order"]) == ("US", "MDY")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setting", "plain"), [({"country": "USA"}, "country"), ({"date_order": "dd/mm"}, "date order")]
)
async def test_a_hook_minted_with_a_wrong_setting_answers_422_hook_misconfigured(
    relay_client: httpx.AsyncClient, passkit: respx.MockRouter, setting: dict[str, str], plain: str
) -> None:
    # Minted before minting checked settings: signed directly, as conftest's mint() does.
    path = mint_path("member-upsert", program_id=PROGRAM, tier_id="base", **setting)
    for _ in range(2):  # the second answer comes from the per-hook cache
        answer = await relay_client.post(path, data={"external_id": "C1", "email": "a@b.co"})
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["code"] == "hook_misconfigured" and error["field"] == next(iter(setting))
        assert (f"This hook's settings are wrong; ask whoever runs the relay to fix the {plain} "
                "setting.") in error["message"]  # fmt: skip
        assert "Error" not in error["message"] and "relay check" in error["hint"]
    assert not passkit.calls


def test_relay_check_lists_each_misconfigured_hook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**BASE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    ok = {"program_id": PROGRAM, "tier_id": "base", "country": "GB"}

    async def register() -> None:
        store = await open_store(env["DATABASE_URL"])
        now = time.time()
        await store.add_hook(HookRecord("hk_good0000001", "member-upsert", ok, "fine", now))
        await store.add_hook(HookRecord("hk_usa00000001", "member-upsert", ok | {"country": "USA"},
                                        "HubSpot", now))  # fmt: skip
        await store.add_hook(HookRecord("hk_order000001", "member-enrol", ok | {"date_order": "x"},
                                        "", now))  # fmt: skip
        await store.close()

    asyncio.run(register())
    code, out, _ = run(capsys, "check", env=env)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("problem: hook")]
    assert set(problems) == {
        "problem: hook hk_usa00000001 (HubSpot), member-upsert: country 'USA' is not a country "
        "the phone library knows: use an ISO code such as US or GB; mint a new URL with "
        "--param country=…",
        "problem: hook hk_order000001, member-enrol: date_order 'x' must be DMY or MDY; mint a "
        "new URL with --param date_order=…",
    }


UNKNOWN = "NoSuchProgram000000001"  # the shape of a PassKit id, in no account


def test_relay_url_looks_the_ids_up_at_passkit_listing_what_exists(
    capsys: pytest.CaptureFixture[str], sandbox: tuple[str, State]
) -> None:
    env = {**BASE_ENV, "PASSKIT_API_URL": sandbox[0]}
    upsert = ["url", "member-upsert", "--param", "tier_id=base", "--param"]
    code, out, err = run(capsys, *upsert, f"program_id={UNKNOWN}", env=env)
    assert code == 1 and out == ""
    assert (f"relay: program_id '{UNKNOWN}' is not a program in the PassKit account "
            f"({sandbox[0].split('//')[1]}); there are: {DEMO_PROGRAM_ID} (Sandbox Coffee Club)"
            ) in err  # fmt: skip
    tier = ["url", "member-upsert", "--param", f"program_id={DEMO_PROGRAM_ID}", "--param"]
    code, _, err = run(capsys, *tier, "tier_id=platinum", env=env)
    assert code == 1
    assert ("relay: tier_id 'platinum' is not a tier of program Sandbox Coffee Club; there are: "
            "base (Base), silver (Silver), gold (Gold)") in err  # fmt: skip
    code, out, _ = run(capsys, *tier, "tier_id=silver", env=env)
    assert code == 0 and out.strip().splitlines()[-1].startswith("https://relay.example.com/")
    code, out, err = run(capsys, *upsert, f"program_id={UNKNOWN}", "--offline", env=env)
    assert code == 0 and "ids are not looked up at PassKit" in err


def test_relay_url_says_when_passkit_cannot_be_read(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**BASE_ENV, "PASSKIT_API_URL": nowhere}
    code, out, err = run(capsys, "url", "member-lookup", "--param", f"program_id={PROGRAM}",
                         env=env)  # fmt: skip
    assert code == 1 and out == ""
    assert "the ids cannot be looked up at PassKit" in err and "--offline" in err


def test_console_looks_the_ids_up_at_passkit_listing_what_exists(
    sandbox: tuple[str, State], tmp_path: Path
) -> None:
    with relay_on_sandbox(sandbox[0], tmp_path, RELAY_ADMIN_PASSWORD=PASSWORD) as url:

        async def walk() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as admin:
                await sign_in(admin)
                form = await admin.get("/admin/hooks/new?template=member-enrol")
                data = {"csrf": token_in(form.text), "template": "member-enrol",
                        "param:program_id": DEMO_PROGRAM_ID,
                        "param:tier_id": "platinum"}  # fmt: skip
                refused = await admin.post("/admin/hooks/new", data=data)
                assert refused.status_code == 422
                assert "Tier &#39;platinum&#39; is not a tier of program" in refused.text
                assert "base (Base), silver (Silver), gold (Gold)" in refused.text
                data |= {"param:program_id": UNKNOWN, "param:tier_id": "base"}
                refused = await admin.post("/admin/hooks/new", data=data)
                assert refused.status_code == 422
                assert f"{DEMO_PROGRAM_ID} (Sandbox Coffee Club)" in refused.text
                data |= {"param:program_id": DEMO_PROGRAM_ID}
                assert (await admin.post("/admin/hooks/new", data=data)).status_code == 303

        asyncio.run(walk())

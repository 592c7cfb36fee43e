"""Deploying: Heroku's Deploy button (app.json, Procfile), the container image (Dockerfile), and
hook URLs minted at the address the operator's browser used when RELAY_PUBLIC_URL is unset."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from relay.admin.session import COOKIE
from relay.commands.cli import build_parser
from relay.settings import load_settings
from relay.store import Store

from .conftest import BASE_ENV, ROOT
from .processes import ServerProcess, free_port
from .test_admin import PASSWORD, token_in
from .test_docs import settings_table

PROGRAM = "3iGxtXJd7x9fU2yYWcdBvQ"  # the shape of a PassKit id
ASKED = ("PASSKIT_API_KEY", "PASSKIT_API_SECRET", "RELAY_ADMIN_PASSWORD")
RUN_ENV = {k: v for k, v in BASE_ENV.items() if k not in ("RELAY_TEMPLATES", "DATABASE_URL")}


# -- Heroku: app.json and the Procfile ---------------------------------------------------------


@pytest.fixture(scope="module")
def app_json() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "app.json").read_text())
    return loaded


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip())  # type: ignore[misc]


# Heroku's app.json schema (Dev Center "app.json Schema"; its JSON Schema in heroku-mcp-server
# forbids other keys): the top-level keys, and the keys one config var may have.
TOP_LEVEL = {"name", "description", "keywords", "website", "repository", "logo", "success_url",
             "scripts", "env", "formation", "addons", "buildpacks", "environments", "stack",
             "image"}  # fmt: skip
ENV_KEYS = {"description", "value", "required", "generator"}


def test_app_json_keeps_to_herokus_schema(app_json: dict[str, Any]) -> None:
    assert set(app_json) <= TOP_LEVEL
    assert re.fullmatch(r"[a-zA-Z._-]+", app_json["name"])
    for name, spec in app_json["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and set(spec) <= ENV_KEYS, name
        assert spec.get("generator", "secret") == "secret", name
        assert isinstance(spec.get("value", ""), str), name
    for process, spec in app_json["formation"].items():
        assert set(spec) <= {"quantity", "size"} and isinstance(spec["quantity"], int), process


def test_app_json_has_what_the_deploy_button_needs(app_json: dict[str, Any]) -> None:
    assert app_json["name"] == "passkit-relay" and app_json["description"]
    assert "passkit" in app_json["keywords"]
    env = app_json["env"]
    assert env["RELAY_SECRET_KEY"]["generator"] == "secret"
    assert "value" not in env["RELAY_SECRET_KEY"]
    for name in ASKED:  # asked for at deploy time, never defaulted
        assert env[name]["required"] is True, name
        assert "value" not in env[name] and "generator" not in env[name], name
        assert env[name]["description"], name
    for name in ("PASSKIT_API_KEY", "PASSKIT_API_SECRET"):
        assert "Settings › Developer Tools" in env[name]["description"], name
    region = env["PASSKIT_REGION"]
    assert region["value"] == "pub1"
    assert "pub1 = EU" in region["description"] and "pub2 = US" in region["description"]
    documented = settings_table()
    for name, spec in env.items():  # every variable is one the relay reads, in the settings table
        assert isinstance(spec["description"], str) and spec["description"], name
        assert name in documented, name
    addons = [a if isinstance(a, str) else a["plan"] for a in app_json["addons"]]
    assert any(a.split(":")[0] == "heroku-postgresql" for a in addons)
    assert app_json["formation"]["web"]["quantity"] == 1
    assert app_json["formation"]["web"]["size"] == "basic"
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]
    assert app_json["success_url"] == "/admin"


def test_release_phase_migrates_and_web_serves_on_port() -> None:
    processes = procfile()
    assert processes["release"].split() == ["relay", "migrate"]
    assert processes["web"].split() == ["relay", "serve", "--port", "$PORT"]
    assert build_parser().parse_args(["migrate"]).command == "migrate"  # the command exists


def test_relay_migrate_runs_as_the_release_phase_would(tmp_path: Path) -> None:
    """As on Heroku before the first dyno starts: the add-on's DATABASE_URL, no secret needed."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    env.pop("RELAY_SECRET_KEY", None)
    done = subprocess.run([sys.executable, "-m", "relay", "migrate"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout and (tmp_path / "relay.db").exists()


# -- the container image -------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def only(instructions: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in instructions if w == word]


def healthcheck_command() -> str:
    [check] = only(dockerfile(), "HEALTHCHECK")
    command = check.partition(" CMD ")[2].strip()
    assert command, "HEALTHCHECK has no CMD"
    return command


def test_dockerfile_serves_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile()
    assert only(instructions, "FROM") == ["python:3.11-slim"]
    users = only(instructions, "USER")
    assert users and users[-1] not in ("root", "0"), "the relay must not run as root"
    assert instructions.index(("USER", users[-1])) > max(
        i for i, (w, _) in enumerate(instructions) if w == "RUN"
    ), "USER comes after every RUN: nothing runs as root after it is set"
    assert any("useradd" in rest for rest in only(instructions, "RUN"))
    assert any("pip install --no-cache-dir -r requirements.txt" in rest
               for rest in only(instructions, "RUN"))  # fmt: skip
    assert (ROOT / "requirements.txt").read_text().splitlines()[-1] == "."  # installs the relay
    [cmd] = only(instructions, "CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["relay", "serve"] and "--port" not in argv  # the port comes from $PORT
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert only(instructions, "EXPOSE") == ["8000"]
    assert "PORT=8000" in " ".join(only(instructions, "ENV"))
    check = healthcheck_command()
    assert "/healthz" in check and "urllib" in check and "curl" not in check
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "tests", "__pycache__", "*.db"} <= ignored


def test_the_images_command_and_healthcheck_work_on_port(tmp_path: Path) -> None:
    """What the container runs, run here: the CMD listens on $PORT from an empty working folder
    (SQLite there, the packaged templates), and the HEALTHCHECK command passes, then fails once
    the relay is gone."""
    argv = json.loads(only(dockerfile(), "CMD")[0])
    installed = Path(sys.executable).parent / argv[0]
    argv[0] = str(installed) if installed.exists() else argv[0]
    server = ServerProcess(argv, RUN_ENV, "/healthz", cwd=tmp_path)
    server.env["PORT"] = str(server.port)
    server.env.pop("DATABASE_URL", None)
    server.env.pop("RELAY_TEMPLATES", None)
    check_env = {**os.environ, "PORT": str(server.port)}
    server.start()
    try:
        assert httpx.get(server.url + "/healthz").status_code == 200
        check = subprocess.run(["/bin/sh", "-c", healthcheck_command()], env=check_env,
                               capture_output=True, timeout=30)  # fmt: skip
        assert check.returncode == 0, check.stderr
    finally:
        server.stop()
    assert (tmp_path / "relay.db").exists()
    check = subprocess.run(["/bin/sh", "-c", healthcheck_command()], env=check_env,
                           capture_output=True, timeout=30)  # fmt: skip
    assert check.returncode != 0


@cache
def docker_unavailable() -> str:
    """Why the image cannot be built and run here; empty when docker works."""
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed on this machine"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"docker cannot reach a daemon here ({why})"
    return ""


@pytest.mark.skipif(bool(docker_unavailable()), reason=docker_unavailable() or "docker works")
def test_docker_image_builds_runs_and_is_healthy() -> None:
    tag = f"passkit-relay-test:{uuid.uuid4().hex[:8]}"
    name = f"passkit-relay-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    try:
        env = [a for k, v in RUN_ENV.items() if k != "PASSKIT_API_URL" for a in ("-e", f"{k}={v}")]
        subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
                        *env, tag], check=True, timeout=60)  # fmt: skip
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert user.stdout.strip() not in ("", "0")
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the container never answered /healthz"
            time.sleep(0.5)
        deadline = time.monotonic() + 90  # the HEALTHCHECK's first run comes after its interval
        health = ""
        while health != "healthy" and time.monotonic() < deadline:
            time.sleep(2)
            health = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip()  # fmt: skip
        assert health == "healthy"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


# -- minted URLs: the address the operator's browser used ------------------------------------


async def mint_in_console(client: httpx.AsyncClient, **headers: str) -> str:
    """Signs in and mints a member-upsert hook through the console, sending `headers` on every
    request (as a proxy in front of the relay would); the minted URL."""
    form = await client.get("/admin/login", headers=headers)
    login = {"csrf": token_in(form.text), "password": PASSWORD}
    signed_in = await client.post("/admin/login", headers=headers, data=login)
    assert signed_in.status_code == 303
    # The cookie is Secure when the proxy says https; the client itself speaks http to the app.
    client.cookies.set(COOKIE, signed_in.cookies[COOKIE], path="/admin")
    page = await client.get("/admin/hooks/new?template=member-upsert", headers=headers)
    minted = await client.post("/admin/hooks/new", headers=headers, data={
        "csrf": token_in(page.text), "template": "member-upsert",
        "param:program_id": PROGRAM, "param:tier_id": "base", "param:timezone": "UTC"})  # fmt: skip
    assert minted.status_code == 303, minted.text
    minted = await client.get(minted.headers["location"], headers=headers)
    found = re.search(r'id="minted-url">([^<]+)<', minted.text)
    assert found, minted.text
    return found.group(1)


@pytest.fixture
def console(
    make_client: Callable[..., httpx.AsyncClient], store: Store, passkit: respx.MockRouter
) -> Callable[..., httpx.AsyncClient]:
    """A console client on `http://relay.example.org` (the Host header the app sees). PassKit
    answers nothing here but 404: minting needs no PassKit account."""
    passkit.route().respond(404, json={"code": 5, "message": "not found"})

    def build(**overrides: str) -> httpx.AsyncClient:
        env = {**BASE_ENV, "RELAY_ADMIN_PASSWORD": PASSWORD, **overrides}
        if "RELAY_PUBLIC_URL" not in overrides:  # BASE_ENV sets one: a deploy may not
            del env["RELAY_PUBLIC_URL"]
        client = make_client(load_settings(env, cwd=ROOT), store=store)
        client.base_url = httpx.URL("http://relay.example.org")
        return client

    return build


@pytest.mark.anyio
async def test_console_mints_at_the_address_the_browser_used_behind_a_trusted_proxy(
    console: Callable[..., httpx.AsyncClient], store: Store
) -> None:
    client = console(RELAY_TRUSTED_PROXIES="1")
    url = await mint_in_console(client, **{"X-Forwarded-Proto": "https",
                                           "X-Forwarded-For": "203.0.113.7"})  # fmt: skip
    assert url.startswith("https://relay.example.org/hooks/"), url
    [hook] = await store.list_hooks()
    assert hook.template == "member-upsert"
    # The minted URL works: the hook page answers at it.
    path = url.removeprefix("https://relay.example.org")
    described = await client.get(path, headers={"Accept": "application/json"})
    assert described.status_code == 200 and described.json()["template"] == "member-upsert"
    # Its page, opened through the proxy, shows the same address.
    page = await client.get(path, headers={"Accept": "text/html", "X-Forwarded-Proto": "https"})
    assert f'<code id="hook-url">{url}</code>' in page.text


@pytest.mark.anyio
async def test_a_scheme_from_an_untrusted_client_is_not_believed(
    console: Callable[..., httpx.AsyncClient],
) -> None:
    client = console(RELAY_TRUSTED_PROXIES="0")  # clients connect directly: headers are theirs
    url = await mint_in_console(client, **{"X-Forwarded-Proto": "https"})
    assert url.startswith("http://relay.example.org/hooks/"), url


@pytest.mark.anyio
async def test_relay_public_url_when_set_wins_over_the_browsers_address(
    console: Callable[..., httpx.AsyncClient],
) -> None:
    client = console(RELAY_PUBLIC_URL="https://passes.example.net/", RELAY_TRUSTED_PROXIES="1")
    url = await mint_in_console(client, **{"X-Forwarded-Proto": "https"})
    assert url.startswith("https://passes.example.net/hooks/"), url


def test_deploy_docs_name_the_button_and_the_docker_run_line() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme.partition("## Deploy")[2].partition("\n## ")[0]
    assert "https://www.herokucdn.com/deploy/button.svg" in deploy
    assert re.search(r"^1\. ", deploy, re.M) and re.search(r"^2\. ", deploy, re.M)
    run = next(line for line in deploy.splitlines() if line.strip().startswith("docker run"))
    assert "RELAY_SECRET_KEY" in deploy and "DATABASE_URL" in deploy and "/data" in deploy
    assert shlex.split(run.rstrip("\\"))[:2] == ["docker", "run"]

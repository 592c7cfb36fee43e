"""The `relay` command line: serve, mint hook URLs, check the configuration, render templates."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from relay import __version__
from relay.access.tokens import Hook, HookSigner, token_from_url
from relay.access.urlguard import guard_of
from relay.commands import events_sample
from relay.delivery.templatecheck import alias_lines, unknown_fields
from relay.delivery.templating import SkipDelivery, TemplateLibrary
from relay.errors import RelayError
from relay.forms.fields import FieldList, Fields, FieldValue
from relay.forms.payloads import normalise_key
from relay.hooks.minting import LiveCheck, MintError, mint, registered, settings_problems
from relay.logsetup import configure_logging
from relay.passkit.account import Account
from relay.settings import ConfigError, Settings, display_url, load_settings, templates_dir
from relay.store import Store, open_store
from relay.stripe.samples import SAMPLES as STRIPE_SAMPLES

T = TypeVar("T")


def _pairs(items: Sequence[str], what: str) -> dict[str, list[str]]:
    pairs: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            print(f"relay: {what} {item!r} must look like name=value", file=sys.stderr)
            raise SystemExit(2)
        pairs.setdefault(key.strip(), []).append(value)
    return pairs


def _params(items: Sequence[str]) -> dict[str, str]:
    return {key: values[-1] for key, values in _pairs(items, "--param").items()}


def _settings(env: Mapping[str, str], *, require_secret: bool = True) -> Settings:
    try:
        return load_settings(env, require_secret=require_secret)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _library(settings: Settings) -> TemplateLibrary:
    library = TemplateLibrary(settings.templates_dir)
    if library.problems:
        for problem in library.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(1)
    return library


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import uvicorn

    from relay.web.serving import busy_port, uvicorn_options

    settings = _settings(env)
    library = _library(settings)
    port = args.port or settings.port
    # Said at once, before the app opens its database and starts its background work.
    if problem := busy_port(args.host, port, "relay serve"):
        print(problem, file=sys.stderr)
        return 1
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    configure_logging()
    workers = args.workers or int(env.get("WEB_CONCURRENCY", "").strip() or 1)
    factory: str | Callable[[], object] = "relay.app:app_from_environ"  # one app a worker
    if workers == 1:
        # Served in this process: the app takes the templates just checked instead of
        # compiling them again (~80 ms of start-up).
        import relay.app

        factory = functools.partial(relay.app.app_from_environ, library=library)
    # Timeouts, and no proxy headers read by uvicorn: the app reads X-Forwarded-For from the
    # right, as far as RELAY_TRUSTED_PROXIES says (relay.web.proxies).
    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=port,
        workers=workers,
        log_level="info",
        **uvicorn_options(settings),
    )
    return 0


def cmd_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.commands.demo import serve_demo
    from relay.web.serving import busy_port

    port = args.port or int(env.get("PORT", "") or 8000)
    problem = busy_port(args.host, port, "relay demo")
    if problem:  # said before a banner whose URLs could not work
        print(problem, file=sys.stderr)
        return 1
    serve_demo(args.host, port, env)
    return 0


def cmd_stripe_sample(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import httpx

    from relay.stripe.samples import SAMPLES, post_sample, sample_event

    if args.event_type not in SAMPLES:
        print(f"no sample for {args.event_type}; there are: {', '.join(SAMPLES)}", file=sys.stderr)
        return 2
    secret = args.secret or env.get("STRIPE_WEBHOOK_SECRET", "").split(",")[0].strip()
    if not secret.startswith("whsec_"):
        print("--secret whsec_… (or STRIPE_WEBHOOK_SECRET) is needed to sign the event",
              file=sys.stderr)  # fmt: skip
        return 2
    event = sample_event(args.event_type, customer=args.customer or None, email=args.email,
                         name=args.name)  # fmt: skip
    try:
        answer = post_sample(args.to, secret, event)
    except httpx.HTTPError as exc:
        print(f"could not reach {args.to}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.event_type} {event['id']} → HTTP {answer.status_code}")
    try:
        print(json.dumps(answer.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(answer.text)
    session = event["data"]["object"].get("id", "")
    if args.event_type == "checkout.session.completed" and answer.is_success:
        # The page Stripe's success_url sends the customer to shows this session's pass.
        base = args.to.split("/stripe/")[0]
        print(f"Checkout session {session}: the customer's success page is "
              f"{base}/checkout/{session}")  # fmt: skip
    ok = answer.is_success and answer.headers.get("content-type", "").startswith("application/json")
    return 0 if ok and answer.json().get("ok") is not False else 1


def cmd_sandbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.sandbox.serve import serve_sandbox
    from relay.web.serving import busy_port

    port = args.port or int(env.get("PORT", "") or 8001)
    if problem := busy_port(args.host, port, "relay sandbox"):
        print(problem, file=sys.stderr)
        return 1
    serve_sandbox(args.host, port, env)
    return 0


def cmd_url(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    library = _library(settings)
    signer = HookSigner([k.reveal() for k in settings.secret_keys])
    base = args.base_url or settings.public_url
    # The ids are looked up in the PassKit account (relay.passkit.account) unless --offline says
    # not to.
    live: LiveCheck | None = None
    account: Account | None = None
    if args.offline:
        print("relay: --offline: settings checked here only; ids are not looked up at PassKit",
              file=sys.stderr)  # fmt: skip
    else:
        from relay.commands.account import live_check

        live, account = live_check(settings)
    try:
        hook, target, url = mint(signer, library, args.template, _params(args.param), base,
                                 live=live, guard=guard_of(settings), account=account)  # fmt: skip
    except MintError as exc:
        for problem in exc.problems:
            print(f"relay: {problem}", file=sys.stderr)
        return 1
    _with_store(settings, lambda store: store.add_hook(registered(hook, args.label)))
    if not args.base_url and not settings.public_url_set:
        # Zapier and Make cannot reach localhost: say so before the URL is pasted anywhere.
        note = (f"relay: note: this URL points at {settings.public_url}; set RELAY_PUBLIC_URL "
                "(or pass --base-url) to the address Zapier and Make can reach")  # fmt: skip
        print(note, file=sys.stderr)
    print(f"hook {hook.id}: {target.summary}" + (f" ({args.label})" if args.label else ""))
    print(url)
    return 0


def _with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` against the configured database (migrated first), then close it."""

    async def run() -> T:
        try:
            store = await open_store(settings.database_url.reveal())
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one readable line
            where = display_url(settings.database_url.reveal())
            print(f"relay: cannot open the database {where}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) if at else "-"


def cmd_hooks(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env, require_secret=False)
    hooks = _with_store(settings, lambda store: store.list_hooks())
    if not hooks:
        print("No hooks yet: mint one with relay url TEMPLATE --param name=value.")
        return 0
    print(f"{'id':<14} {'status':<8} {'template':<22} {'created':<17} {'last used':<17} "
          f"{'uses':>6} {'fails':>6}  label / params")  # fmt: skip
    for hook in hooks:
        params = " ".join(f"{k}={v}" for k, v in sorted(hook.params.items()))
        status = "revoked" if hook.revoked else "active"
        print(
            f"{hook.id:<14} {status:<8} {hook.template:<22} {_when(hook.created_at):<17} "
            f"{_when(hook.last_used_at):<17} {hook.deliveries:>6} {hook.failures:>6}  "
            f"{hook.label or '-'} [{params}]"
        )
    return 0


def cmd_revoke(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env, require_secret=False)
    given = args.hook.strip()
    hook: Hook | None = None
    if not re.fullmatch(r"hk_[0-9a-f]+", given):
        if not settings.secret_keys:
            print("relay: RELAY_SECRET_KEY is needed to read a hook URL.", file=sys.stderr)
            return 1
        try:
            hook = HookSigner([k.reveal() for k in settings.secret_keys]).verify(
                token_from_url(given)
            )
        except RelayError as exc:
            print(f"relay: {exc.message}", file=sys.stderr)
            return 1
    hook_id = hook.id if hook else given

    async def revoke(store: Store) -> bool:
        if hook is not None:  # a verified URL: revoke it even if the registry never saw it
            return await store.revoke_hook(
                hook_id, time.time(), template=hook.template, params=dict(hook.params)
            )
        if await store.get_hook(hook_id) is None:
            print(f"relay: no hook {hook_id} in the registry; pass its URL instead.",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(1)
        return await store.revoke_hook(hook_id, time.time())

    if _with_store(settings, revoke):
        print(f"revoked {hook_id}: its URL answers 401 revoked_token within a few seconds.")
    else:
        print(f"{hook_id} was already revoked.")
    return 0


def cmd_migrate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env, require_secret=False)

    async def ready(store: Store) -> bool:
        return await store.ping()

    _with_store(settings, ready)  # opening the store applies pending migrations
    print(f"ok: database {display_url(settings.database_url.reveal())} is up to date")
    return 0


def cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        problems += exc.problems
    folder = templates_dir(env, Path.cwd())
    library = TemplateLibrary(folder) if folder.is_dir() else None
    problems += library.problems if library else []
    for template in library.templates.values() if library else ():
        problems += unknown_fields(template)
    if settings is not None and library is not None and not problems:
        problems += _hook_problems(settings, library)
        if settings.alert_url and (
            refused := guard_of(settings).problem(settings.alert_url.reveal())
        ):
            problems.append(f"RELAY_ALERT_URL is refused, no alert is sent: {refused}")
    for problem in problems:
        print(f"problem: {problem}")
    if problems or settings is None or library is None:
        return 1
    for warning in settings.warnings:
        print(f"warning: {warning}")
    print(f"ok: {len(library.templates)} templates in {settings.templates_dir}")
    print(f"ok: PassKit API at {settings.passkit_api_url}")
    print(f"ok: database {display_url(settings.database_url.reveal())}")
    for template in library.templates.values():
        for line in alias_lines(template):
            print(f"ok: {line}")
    if not getattr(args, "live", False):
        return 0
    from relay.commands.account import check_live

    return check_live(settings)


def _hook_problems(settings: Settings, library: TemplateLibrary) -> list[str]:
    """One line per registered, unrevoked hook whose settings its template refuses now."""

    async def listed() -> list[str]:
        store = await open_store(settings.database_url.reveal())
        try:
            hooks = await store.list_hooks(include_revoked=False)
        finally:
            await store.close()
        lines = []
        for hook in hooks:
            wrong = settings_problems(library, hook.template, hook.params, guard_of(settings))
            if wrong:
                label = f" ({hook.label})" if hook.label else ""
                lines.append(f"hook {hook.id}{label}, {hook.template}: {wrong}")
        return lines

    try:
        return asyncio.run(listed())
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one readable line
        where = display_url(settings.database_url.reveal())
        return [f"cannot read the hooks in the database {where}: {exc}"]


def _fields(items: Sequence[str]) -> tuple[Fields, list[str]]:
    fields: Fields = {}
    for key, values in _pairs(items, "field").items():
        name = normalise_key(key)
        texts = [FieldValue(v.strip(), name) for v in values if v.strip()]
        if texts:
            fields[name] = texts[0] if len(texts) == 1 else FieldList(texts, name)
    return fields, list(fields)


def cmd_render(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.delivery.pipeline import Relay
    from relay.passkit.client import PassKitClient

    settings = _settings(env, require_secret=False)
    library = _library(settings)
    fields, received = _fields(args.fields)
    hook = Hook(id="hk_render", template=args.template, params=_params(args.param))
    relay = Relay(library=library, client=PassKitClient(settings))
    try:
        request = relay.prepare(hook, fields, received)
    except SkipDelivery as skip:
        print(f"skipped: {skip.reason}")
        return 0
    except RelayError as exc:
        print(json.dumps(exc.answer(), indent=2, ensure_ascii=False))
        return 1
    print(f"{request.method} {request.path}")
    if request.json is not None:
        print(json.dumps(request.json, indent=2, ensure_ascii=False))
    return 0


def cmd_import(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.commands.imports import import_csv

    settings = _settings(env)
    _library(settings)
    failed_to = Path(args.failed_to) if args.failed_to else None
    return asyncio.run(import_csv(settings, Path(args.file), args.hook, dry_run=args.dry_run,
                                  failed_to=failed_to, resume=args.resume,
                                  encoding=args.encoding, columns=args.map))  # fmt: skip


def cmd_erase(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.commands.privacy import erase_command

    return asyncio.run(erase_command(_settings(env), args.who, passkit=args.passkit))


def cmd_reencrypt(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from relay.commands.privacy import reencrypt_command

    return asyncio.run(reencrypt_command(_settings(env)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    parser.add_argument("--version", action="version", version=f"passkit-relay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the production server (uvicorn)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    serve.add_argument("--workers", type=int, default=None,
                       help="processes sharing the port and database (default: "
                            "$WEB_CONCURRENCY or 1)")  # fmt: skip
    serve.set_defaults(handler=cmd_serve)

    demo = sub.add_parser("demo", help="the relay and a PassKit sandbox: try it, no account")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    demo.set_defaults(handler=cmd_demo)

    sample = sub.add_parser("stripe-sample", help="post a signed sample Stripe event to a relay")
    sample.add_argument(
        "event_type", metavar="EVENT_TYPE", help=", ".join(STRIPE_SAMPLES)
    )  # every sample the command takes
    sample.add_argument("--to", required=True, metavar="URL", help="the relay's /stripe/… URL")
    sample.add_argument("--secret", default="", metavar="whsec_…",
                        help="signing secret (default: $STRIPE_WEBHOOK_SECRET)")  # fmt: skip
    sample.add_argument("--customer", default="", help="Stripe customer id (default: a new one)")
    sample.add_argument("--email", default="ana@example.com")
    sample.add_argument("--name", default="Ana Díaz")
    sample.set_defaults(handler=cmd_stripe_sample)

    sandbox = sub.add_parser("sandbox", help="the PassKit sandbox alone (tests, benchmarks)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=None, help="default: $PORT or 8001")
    sandbox.set_defaults(handler=cmd_sandbox)

    url = sub.add_parser("url", help="mint a hook URL (the URL is the last line printed)")
    url.add_argument("template", help="template name, e.g. member-upsert, or stripe")
    url.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    url.add_argument("--label", default="", help="a note saying where the URL is used")
    url.add_argument("--base-url", default="", help="default: $RELAY_PUBLIC_URL")
    url.add_argument("--offline", action="store_true",
                     help="check the settings without looking the ids up at PassKit")  # fmt: skip
    url.set_defaults(handler=cmd_url)

    events_sample.add_parser(sub)

    hooks = sub.add_parser("hooks", help="list minted hooks, their use and status")
    hooks.set_defaults(handler=cmd_hooks)

    revoke = sub.add_parser("revoke", help="revoke a hook: its URL stops working")
    revoke.add_argument("hook", metavar="HOOK_ID_OR_URL")
    revoke.set_defaults(handler=cmd_revoke)

    migrate = sub.add_parser("migrate", help="apply database migrations (Heroku release phase)")
    migrate.set_defaults(handler=cmd_migrate)

    check = sub.add_parser("check", help="validate the configuration, every template and the "
                           "settings of every hook")  # fmt: skip
    live_help = "also connect to PassKit and list its programs, campaigns and events"
    check.add_argument("--live", action="store_true", help=live_help)
    check.set_defaults(handler=cmd_check)

    render = sub.add_parser("render", help="print the PassKit request a delivery would send")
    render.add_argument("template")
    render.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    render.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    render.set_defaults(handler=cmd_render)

    imports = sub.add_parser("import", help="bring existing members in: each row of a CSV is "
                             "one delivery of a hook")  # fmt: skip
    imports.add_argument("file", metavar="FILE.csv", help="a header row, then one row a member")
    imports.add_argument("--hook", required=True, metavar="HOOK_URL_OR_ID",
                         help="the hook URL, or its id (hk_…) from relay hooks")  # fmt: skip
    dry_help = "check every row and list the bad ones by line; send nothing"
    imports.add_argument("--dry-run", action="store_true", help=dry_help)
    failed_help = "write failed rows here, with the reason, to fix and import again"
    imports.add_argument("--failed-to", default="", metavar="FILE", help=failed_help)
    resume_help = "carry on a run that stopped, skipping the rows it finished"
    imports.add_argument("--resume", action="store_true", help=resume_help)
    encoding_help = ("read a file that is not UTF-8 as Windows-1252 (cp1252), once its first "
                     "rows, shown by a run without it, read right")  # fmt: skip
    imports.add_argument("--encoding", choices=["cp1252"], default="", help=encoding_help)
    map_help = ('match one of your columns to a hook field, e.g. --map "Member No=external_id" '
                "(repeat for each); then only matched columns are sent, a column named exactly "
                "as a field matching it")  # fmt: skip
    imports.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD",
                         help=map_help)  # fmt: skip
    imports.set_defaults(handler=cmd_import)

    erase = sub.add_parser("erase", help="remove one person from everything the relay keeps "
                           "(delivery log, stored answers, events, spend, checkouts)",
                           epilog="exit status: 0 erased, 2 nothing asked or --passkit "
                           "without credentials, 3 nothing found for them (nothing was "
                           "erased)")  # fmt: skip
    erase.add_argument("who", metavar="EMAIL_OR_EXTERNAL_ID",
                       help="their email, external id or Stripe customer id")  # fmt: skip
    erase.add_argument("--passkit", action="store_true",
                       help="also delete their member record at PassKit (their pass stops "
                            "working)")  # fmt: skip
    erase.set_defaults(handler=cmd_erase)

    reencrypt = sub.add_parser("reencrypt", help="re-seal stored personal data under the first "
                               "RELAY_ENCRYPTION_KEY (after a rotation)")  # fmt: skip
    reencrypt.set_defaults(handler=cmd_reencrypt)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    # `render T --param k=v field=value`: argparse leaves fields given after an option unread.
    args, extra = parser.parse_known_args(argv)
    if args.command == "render" and not any(item.startswith("-") for item in extra):
        args.fields += extra
    elif extra:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    code: int = args.handler(args, os.environ if env is None else env)
    return code


def main_exit() -> None:
    """Console-script entry point."""
    raise SystemExit(main())

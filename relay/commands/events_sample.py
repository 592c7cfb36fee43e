"""`relay events-sample HOOK_URL_OR_ID [--event installed]`: send a sample event to a PassKit
events URL's Zapier Catch Hook or Make webhook, so the zap can map its fields before PassKit
sends anything (relay.events.sample). The sample goes through the outbox and the forwarder like
a real event; this command forwards it itself (its worker takes whatever is due, as any relay
process's does, so a running relay may take the sample first: alike) and says what the receiver
answered."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Mapping

from relay.access.tokens import HookSigner, token_from_url
from relay.access.urlguard import guard_of
from relay.delivery.services import sealer_for
from relay.errors import RelayError
from relay.events.forwarder import Forwarder, where
from relay.events.params import TEMPLATE
from relay.events.sample import NotASampleEvent, send_sample
from relay.settings import ConfigError, Settings, load_settings
from relay.store import PassKitEvent
from relay.store.handle import StoreHandle

WAIT = 20.0  # seconds to wait for the receiver's answer


class Refused(Exception):
    """What to print instead of sending."""


async def run(settings: Settings, given: str, event: str) -> PassKitEvent:
    handle = StoreHandle(settings.database_url.reveal(), sealer=sealer_for(settings))
    forwarder = Forwarder(handle, clock=time.time, first_retry=settings.forward_retry,
                          give_up=settings.forward_give_up, guard=guard_of(settings))  # fmt: skip
    try:
        store = await handle.get()
        if re.fullmatch(r"hk_[0-9a-f]+", given):
            record = await store.get_hook(given)
            if record is None:
                raise Refused(f"no hook {given} in the registry; pass its URL instead.")
            hook_id, template, params = record.id, record.template, record.params
        else:
            try:
                hook = HookSigner([k.reveal() for k in settings.secret_keys]).verify(
                    token_from_url(given)
                )
            except RelayError as exc:
                raise Refused(exc.message) from None
            hook_id, template, params = hook.id, hook.template, dict(hook.params)
            record = await store.get_hook(hook_id)
        if template != TEMPLATE:
            raise Refused(f"{hook_id} is not a PassKit events URL (it is {template}).")
        if record is not None and record.revoked:
            raise Refused(f"{hook_id} is revoked: it forwards nothing.")
        try:
            sent = await send_sample(store, hook_id, params, event, time.time())
        except NotASampleEvent as exc:
            raise Refused(str(exc)) from None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            await forwarder.run_once()  # a running relay's worker may take it first: alike
            now = await store.get_event(sent.id)
            if now is not None and (now.state != "pending" or now.last_status or now.last_error):
                return now
            await asyncio.sleep(0.2)
        return sent
    finally:
        await forwarder.stop()
        await handle.close()


def cmd_events_sample(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 1
    try:
        event = asyncio.run(run(settings, args.hook.strip(), args.event))
    except Refused as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    to = where(event.forward_to)
    if event.state == "forwarded":
        print(f"sample “{event.event}” sent to {to} (it answered {event.last_status}); its "
              "fields can be mapped now. It carries sample: true: filter on it to skip "
              "samples.")  # fmt: skip
        return 0
    said = event.last_error or f"{to} has not answered yet"
    then = "given up" if event.state == "failed" else "it will be tried again"
    print(f"relay: sample “{event.event}” not taken: {said} ({then}).", file=sys.stderr)
    return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sample = sub.add_parser("events-sample", help="send a sample PassKit event to a PassKit "
                            "events URL's Zapier or Make hook, to map its fields")  # fmt: skip
    sample.add_argument("hook", metavar="HOOK_URL_OR_ID")
    sample.add_argument("--event", default="installed",
                        help="which event: installed (default), created, member.enrolled, "
                             "coupon.redeemed …")  # fmt: skip
    sample.set_defaults(handler=cmd_events_sample)

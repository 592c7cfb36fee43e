"""Minting hook URLs: which params a template (or the Stripe endpoint) takes, checked before a
URL is signed, so a URL never leaves the relay missing what its deliveries will need.

Shared by `relay url`, the demo and the admin console. `stripe` is not a template but the Stripe
endpoint: its URL carries the params every `templates/stripe/*` template may use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from relay.store import HookRecord
from relay.stripe_events import PARAMS_TEMPLATE, TEMPLATE_PREFIX
from relay.templating import ParamSpec, TemplateLibrary
from relay.tokens import Hook, HookSigner, hook_url, new_hook_id


@dataclass(frozen=True)
class Endpoint:
    """What a URL can be minted for: a hook template, or the Stripe endpoint."""

    name: str
    summary: str
    params: Mapping[str, ParamSpec]
    kind: str  # the URL's path segment: "hooks" or "stripe"


class MintError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def endpoint(library: TemplateLibrary, name: str) -> Endpoint:
    if name == PARAMS_TEMPLATE:
        params: dict[str, ParamSpec] = {}
        for each in library.templates.values():
            if each.name.startswith(TEMPLATE_PREFIX):
                for spec in each.params.values():
                    seen = params.get(spec.name)
                    params[spec.name] = spec if seen is None or spec.required else seen
        summary = "Stripe events: issue, update and revoke passes from payments and subscriptions"
        return Endpoint(name, summary, params, "stripe")
    template = library.get(name)
    if template is None or name.startswith(TEMPLATE_PREFIX):
        known = [n for n in library.names() if not n.startswith(TEMPLATE_PREFIX)]
        raise MintError([f"no template named {name!r}; there are: {', '.join(known)}, stripe"])
    return Endpoint(name, template.summary, template.params, "hooks")


def check_params(target: Endpoint, given: Mapping[str, str]) -> None:
    problems = []
    unknown = sorted(set(given) - set(target.params))
    if unknown:
        known = ", ".join(target.params) or "none"
        problems.append(f"{target.name} takes no param {', '.join(unknown)} (it takes: {known})")
    for spec in target.params.values():
        if spec.required and spec.default is None and not given.get(spec.name):
            problems.append(f"--param {spec.name}=… is required: {spec.help}")
    if problems:
        raise MintError(problems)


def registered(hook: Hook, label: str = "") -> HookRecord:
    """The registry's row for a hook just minted (created now)."""
    return HookRecord(hook.id, hook.template, dict(hook.params), label, created_at=time.time())


def mint(
    signer: HookSigner, library: TemplateLibrary, name: str, params: Mapping[str, str], base: str
) -> tuple[Hook, Endpoint, str]:
    """A new hook for `name` with `params`, and its URL under `base`; MintError if refused."""
    target = endpoint(library, name)
    check_params(target, params)
    hook = Hook(id=new_hook_id(), template=target.name, params=dict(params))
    return hook, target, hook_url(base, signer.mint(hook), kind=target.kind)

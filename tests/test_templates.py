"""Every shipped template renders the exact PassKit request from a realistic flat payload."""

from __future__ import annotations

import pytest

from relay.delivery import Relay
from relay.fields import FieldValue
from relay.passkit import PassKitClient
from relay.settings import Settings
from relay.templating import TemplateLibrary
from relay.tokens import Hook

from .cases import CASES, Case
from .conftest import FROZEN_NOW, ROOT


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(ROOT / "templates")


def test_every_shipped_template_loads_and_is_covered(library: TemplateLibrary) -> None:
    assert library.problems == []
    hook_templates = [n for n in library.names() if not n.startswith("stripe/")]
    assert sorted(c.template for c in CASES) == hook_templates


def test_every_field_and_param_is_documented(library: TemplateLibrary) -> None:
    for template in library.templates.values():
        assert template.summary, template.name
        for spec in template.fields.values():
            assert spec.help and spec.example, f"{template.name}: {spec.name}"
        for param in template.params.values():
            assert param.help, f"{template.name}: {param.name}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.template)
def test_template_renders_exact_request(
    case: Case, library: TemplateLibrary, settings: Settings
) -> None:
    relay = Relay(library=library, client=PassKitClient(settings), clock=lambda: FROZEN_NOW)
    fields = {k: FieldValue(v, k) for k, v in case.fields.items()}
    request = relay.prepare(Hook("hk_x", case.template, case.params), fields, list(fields))
    assert (request.method, request.path) == (case.method, case.path)
    assert request.json == case.json

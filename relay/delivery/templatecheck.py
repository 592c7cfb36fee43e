"""`relay check`'s reading of what each template sends, judged by PassKit's contract.

Each hook template is rendered once with an example for every field (its own `example`, or one
for its type) and every setting, and the body is checked against the RPC's input message. A
field PassKit does not define is the one mistake no delivery would reveal (PassKit's gateway
would drop it without a word, or refuse every call), so it is reported with the template, the
line that writes it and the field. Other problems depend on what a zap sends and are left to the
deliveries' own 422s. Stripe templates read events, not fields: the test suite renders them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.delivery.templating import RequestTemplate, SkipDelivery, render, resolve_params
from relay.errors import FieldError, RelayError
from relay.forms.fields import Fields, FieldValue
from relay.passkit.operations import problems_in
from relay.passkit.schema import UNKNOWN_FIELD

# An example for each field type, for fields that declare none.
SAMPLES = {
    "text": "Sample",
    "email": "ana@example.com",
    "phone": "+447911123456",
    "date": "1990-04-27",
    "datetime": "2026-12-24T19:30:00Z",
    "number": "1",
    "money": "12.50",
}
_EXAMPLE_NOW = datetime(2026, 12, 1, tzinfo=UTC)  # fixed, so a check reads the same every day


def alias_lines(template: RequestTemplate) -> list[str]:
    """One line per field with declared aliases: what `relay check` shows of them."""
    return [f"{template.name} reads {', '.join(spec.aliases)} as {spec.name} (hooks minted "
            "from v2 on)" for spec in template.fields.values() if spec.aliases]  # fmt: skip


def unknown_fields(template: RequestTemplate) -> list[str]:
    """One line per field the template sends that PassKit does not define."""
    if template.name.startswith("stripe/"):
        return []
    body = _example_body(template)
    if body is None:
        return []
    problems = problems_in(template.operation, body)
    return [_where(template, path) for path, why in problems if why.startswith(UNKNOWN_FIELD)]


def _example_body(template: RequestTemplate) -> Any:
    """The template rendered with examples; a field whose example its filter refuses gets its
    type's sample, then is left out. None when no body comes of it (a skip, a broken param)."""
    fields: Fields = {
        name: FieldValue(spec.example or SAMPLES.get(spec.type, "Sample"), name)
        for name, spec in template.fields.items()
        if "*" not in name
    }
    fields["meta_example"] = FieldValue("Sample", "meta_example")
    given = {n: p.default or p.example or "sample" for n, p in template.params.items()}
    for _ in range(2 * len(fields) + 1):
        try:
            return render(template, fields, resolve_params(template, given), now=_EXAMPLE_NOW)
        except FieldError as exc:
            spec = template.fields.get(exc.field or "")
            sample = SAMPLES.get(spec.type, "Sample") if spec else None
            if exc.field not in fields:
                return None
            if sample is not None and fields[exc.field] != sample:
                fields[exc.field] = FieldValue(sample, exc.field)
            else:
                del fields[exc.field]
        except (RelayError, SkipDelivery):
            return None
    return None


def _where(template: RequestTemplate, path: str) -> str:
    key = path.rsplit(".", 1)[-1]
    source = template.path.read_text(encoding="utf-8").splitlines()
    line = next((n for n, text in enumerate(source, 1) if f'"{key}"' in text), None)
    at = f" line {line}" if line else ""
    return (
        f"template {template.name}{at}: sends {path}, a field PassKit does not define for "
        f"{template.operation.name}; remove it or put the value under metaData"
    )

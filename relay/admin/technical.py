"""A delivery page's "Technical details" and pass preview: the logged JSON with every masked
value marked as such, and one plain sentence on what the log hid and kept."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from relay.redact import MASK

# Where the sandbox's pass card may be shown in a frame: PassKit's own pass pages are linked
# only (whether they may be framed is PassKit's to decide, and it is not documented).
PASSKIT_PAGES = ".pskt.io"


def masked_json(value: Any) -> Markup:
    """`value` as indented JSON, escaped, each masked value wrapped so it shows as hidden."""
    text = str(escape(json.dumps(value, indent=2, ensure_ascii=False, default=str)))
    mark = f'<mark class="masked" title="hidden by the relay">{MASK}</mark>'
    return Markup(text.replace(MASK, mark))  # noqa: S704 - escaped above, MASK is ours


def masked_count(*values: Any) -> int:
    """How many masked values the logged JSON holds."""
    return sum(json.dumps(v, default=str).count(MASK) for v in values if v is not None)


def privacy_note(log_payloads: bool, retention_days: float) -> str:
    """What the log hid and what it kept, and the setting that decides it."""
    days = f"{retention_days:g} day{'' if retention_days == 1 else 's'}"
    if not log_payloads:
        return (
            "Nothing that arrived was kept: RELAY_LOG_PAYLOADS is off, so the log holds only "
            "when it came, which hook, what happened and the error code — no names, emails or "
            "other personal data."
        )
    return (
        f"Secrets (passwords, API keys, tokens, signing secrets, anything shaped like one) are "
        f"hidden and show as {MASK}. Personal data (names, emails, phone numbers) is kept "
        f"because RELAY_LOG_PAYLOADS is on, and deleted with the delivery after {days}."
    )


def card_preview(pass_url: str | None) -> str | None:
    """The page to show in a frame on the delivery page (the sandbox's pass card), or None
    when the pass is PassKit's own page (linked only) or there is no pass."""
    if not pass_url:
        return None
    host = urlsplit(pass_url).hostname or ""
    return None if host.endswith(PASSKIT_PAGES) or not host else pass_url

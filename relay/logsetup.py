"""Logging for the `relay` processes: one line per request on stderr (Heroku's log drain).

Every line passes through the same redaction as the delivery log (`redact_text`), tracebacks
included, so a secret that reaches a message or an exception's text is masked before it is
written.
"""

from __future__ import annotations

import logging

from relay.redact import redact_text


class Redacting(logging.Filter):
    """Masks secret-shaped text in a record's message and traceback before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redacting) for f in handler.filters):
            handler.addFilter(Redacting())
    # httpx logs every call at INFO; the relay's own line per request says enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)

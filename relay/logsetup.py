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
        # The message is formatted once, here: the handler's formatter reads it as it is.
        record.msg, record.args = redact_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    # No line shows where it was logged from, nor the thread or process: skip finding them for
    # each record (the "Optimization" section of the logging HOWTO), ~10 µs a request's line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redacting) for f in handler.filters):
            handler.addFilter(Redacting())
    # httpx logs every call at INFO; the relay's own line per request says enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)

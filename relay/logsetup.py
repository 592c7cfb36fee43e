"""Logging for the `relay` processes: one line per request on stderr (Heroku's log drain)."""

from __future__ import annotations

import logging


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    # httpx logs every call at INFO; the relay's own line per request says enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)

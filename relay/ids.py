"""Unique, non-secret ids on the hot path (request ids, delivery ids, claim owners).

`secrets` reads the OS's random source on every call, a system call per id, three ids per
delivery; these ids only need to be unique, not unguessable, so they come from a fast PRNG
seeded once per process from the OS (different in every process, so processes sharing a
database never collide). Anything that must be unguessable still uses `secrets`.
"""

from __future__ import annotations

import os
import random

_random = random.Random(os.urandom(32))  # noqa: S311 - uniqueness, not secrecy


def unique_hex(length: int) -> str:
    """`length` hex digits."""
    return f"{_random.getrandbits(length * 4):0{length}x}"

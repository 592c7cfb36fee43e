"""What a console POST did, kept a short while for the page it redirects to (POST/redirect/GET):
the redirect names a random token, and the page shows the result again on Back or a reload
without doing it again. In memory, per process, for the session that did it: a result another
process or session asks for is simply not there, and the page says what to do instead."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

from relay.ids import unique_hex

T = TypeVar("T")
KEEP = 15 * 60.0  # seconds a result stays
MOST = 200  # results kept at most (the oldest go first)


class Results(Generic[T]):
    def __init__(self, keep: float = KEEP, most: int = MOST) -> None:
        self._kept: OrderedDict[str, tuple[float, tuple[str, ...], T]] = OrderedDict()
        self.keep_for, self.most = keep, most

    def keep(self, owner: tuple[str, ...], result: T) -> str:
        """Keep `result` for `owner` (the session, and what it is about); its token."""
        token = unique_hex(12)
        self._kept[token] = (time.monotonic(), owner, result)
        while len(self._kept) > self.most:
            self._kept.popitem(last=False)
        return token

    def get(self, owner: tuple[str, ...], token: str) -> T | None:
        kept = self._kept.get(token)
        if kept is None or kept[1] != owner or time.monotonic() - kept[0] > self.keep_for:
            return None
        return kept[2]

"""The relay's own per-hook rate limit: a token bucket per hook id, in each process.

It stops a runaway zap (a loop, a misconfigured trigger) from hammering PassKit and billing
passes at machine speed, while letting a back-fill's burst through: each hook may send `rate`
deliveries a second on average and bursts of up to `burst`. Over it, the delivery is refused
with 429 `rate_limited` and a Retry-After, before anything is read or sent.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from relay.errors import RateLimited

MAX_HOOKS = 10_000  # buckets kept; the least recently used are forgotten (they refill anyway)


class HookRateLimit:
    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, hook_id: str) -> None:
        """Spend one delivery from the hook's bucket, or raise RateLimited."""
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, then = self._buckets.pop(hook_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[hook_id] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.rate)
            raise RateLimited(
                f"This hook is sending more than {self.rate:g} deliveries a second "
                f"(bursts up to {self.burst:g}).",
                retry_after=max(1, wait),
            )
        self._buckets[hook_id] = (tokens - 1, now)
        if len(self._buckets) > MAX_HOOKS:
            self._buckets.popitem(last=False)

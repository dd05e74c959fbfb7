"""Slow down repeated failed authentications from one address.

Only failures are counted and only failing requests are refused: a request
with a valid key is never throttled, whatever else came from its address.
The counts live in each worker process (a guess per worker, not a global
count), which is enough to turn a brute-force loop into a trickle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from tokenkeep.models import Clock

MAX_ADDRESSES = 10_000


class FailureThrottle:
    """Counts failures per address in a sliding window."""

    def __init__(self, clock: Clock, *, limit: int = 10, window: float = 60.0) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def record_failure(self, address: str) -> float | None:
        """Count a failure; return seconds to wait when over the limit, else None."""
        now = self.clock()
        with self._lock:
            times = self._failures.pop(address, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            times.append(now)
            self._failures[address] = times
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
            if len(times) > self.limit:
                return max(1.0, times[-self.limit - 1] + self.window - now)
        return None

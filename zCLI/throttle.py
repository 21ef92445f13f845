"""Failed sign-ins counted per key in a sliding window, as a pure class.

zAuth keeps one ``FailedSignIns`` per account and one per client address. The caller
passes the clock (``now``, in seconds) to every call, like the bridge's TokenBucket, so
the rules are tested with plain numbers and no waiting; ``now`` must never go back
(zAuth uses ``time.monotonic``). Memory is bounded twice: a key
keeps at most ``limit`` timestamps, and at most ``max_keys`` keys are tracked; expired
keys are dropped first, then the key whose last failure is oldest.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

__all__ = ["FailedSignIns"]


class FailedSignIns:
    """At most ``limit`` failures per key within ``window`` seconds; more must wait."""

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be at least 1 and window above 0")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        # Ordered by each key's latest failure, oldest first, so expired keys are at the
        # front and pruning stops at the first live one.
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are tracked (expired ones included until the next prune)."""
        return len(self._failures)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may try again; 0.0 when it may try now."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] + self.window <= now:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def fail(self, key: Hashable, now: float) -> None:
        """Count one failed sign-in for ``key`` at ``now``."""
        self._prune(now)
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._failures.popitem(last=False)
            times = self._failures[key] = deque(maxlen=self.limit)
        else:
            self._failures.move_to_end(key)
        times.append(now)

    def clear(self, key: Hashable) -> None:
        """Forget ``key``'s failures (after it signs in)."""
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        """Drop keys whose latest failure has left the window."""
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] + self.window > now:
                return
            del self._failures[key]

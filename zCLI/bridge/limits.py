"""Rate limits as pure classes: the caller passes the clock, nothing here sleeps."""

from __future__ import annotations

import math

__all__ = ["LogThrottle", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; each message takes one."""

    __slots__ = ("rate", "burst", "tokens", "updated")  # one per connection: no __dict__

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LogThrottle:
    """Counts events and says when to log them: at most once per ``interval`` seconds.

    ``hit(now)`` returns how many events the log line should report (this one and those
    kept quiet since the last line), or 0 when this one should not be logged. A flood of
    refused connections then costs one log line a second, not one each.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = -math.inf
        self.unreported = 0

    def hit(self, now: float) -> int:
        self.unreported += 1
        if now - self.last < self.interval:
            return 0
        count, self.unreported, self.last = self.unreported, 0, now
        return count

    def flush(self) -> int:
        """The events not reported yet (say them at shutdown); counting starts afresh."""
        count, self.unreported = self.unreported, 0
        return count

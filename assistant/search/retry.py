"""Bounded retries for search backends: exponential backoff with jitter inside a time budget per query, and a
cool-down for a backend that keeps failing, so that a rate-limited engine is not hammered (no retry storm).

    PYTHONPATH=. python -c "from assistant.search.retry import Retry; r = Retry(); \
        print([round(r.delay(k), 2) for k in (1, 2, 3, 4)])"

Only a `TransientSearchError` (timeout, refused connection, HTTP 429/5xx, a ddgs rate limit) is retried; any
other `SearchError` means a wrong setting or a broken answer that asking again would not fix. The wait after
attempt k is base·2^(k-1), capped, of which the second half is random ("equal jitter": it keeps the growth
while spreading out clients that failed together), or longer if the server asked for it with Retry-After.
An attempt is only started when its wait still fits the budget: the worst case is the budget plus one
attempt's own timeout. `attempts` bounds the requests one query sends to one backend.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from assistant.search.base import TransientSearchError

T = TypeVar("T")


@dataclass
class Retry:
    """How a backend is retried; `sleep`, `clock` and `rng` are injectable for tests."""

    attempts: int = 3
    budget: float = 15.0  # seconds one query may spend on one backend's retries
    base: float = 0.5
    cap: float = 8.0
    cooldown: float = 60.0  # a backend that failed every attempt is skipped this long
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based): half of base·2^(attempt-1) plus up to as much."""
        full = min(self.cap, self.base * 2 ** (attempt - 1))
        return full / 2 + self.rng.uniform(0, full / 2)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()`, retried on TransientSearchError; the last error, saying how often it was tried, if all fail."""
        start = self.clock()
        attempt = 1
        while True:
            try:
                return fn()
            except TransientSearchError as e:
                wait = max(self.delay(attempt), e.retry_after or 0.0)
                spent = self.clock() - start
                if attempt < self.attempts and spent + wait <= self.budget:
                    self.sleep(wait)
                    attempt += 1
                    continue
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''} in {spent:.1f}s"
                if e.retry_after and spent + e.retry_after > self.budget:
                    tries += f"; it asked to wait {e.retry_after:g}s, beyond the {self.budget:g}s search budget"
                raise TransientSearchError(f"{e} ({tries})", e.retry_after) from None


@dataclass
class Breaker:
    """Remembers backends that failed every attempt, and for how long more to skip them."""

    retry: Retry
    down: dict[str, tuple[float, str]] = field(default_factory=dict)  # name -> (until, why)

    def skip(self, name: str) -> str | None:
        """Why `name` is skipped now, or None if it may be tried."""
        until, why = self.down.get(name, (0.0, ""))
        left = until - self.retry.clock()
        if left <= 0:
            self.down.pop(name, None)
            return None
        return f"skipped for {left:.0f}s more after failing every attempt ({why})"

    def failed(self, name: str, why: str) -> None:
        """Skip `name` for the cool-down."""
        if self.retry.cooldown > 0:
            self.down[name] = (self.retry.clock() + self.retry.cooldown, why)

    def worked(self, name: str) -> None:
        """`name` answered: try it again at once next time."""
        self.down.pop(name, None)

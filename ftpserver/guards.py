"""Shared protections against overload and abuse, each one object behind its own lock.

* :class:`SessionLimiter`: sessions in total and per client IP.
* :class:`BanList`: failed logins per client IP across connections; a ban
  after too many within a window.
* :class:`PasswordGate`: at most N bcrypt checks at once, and a short-lived
  in-memory cache of successful checks (an HMAC of the password under a key
  that lives only in this process; never written anywhere).
* :class:`Bandwidth`: token buckets per user and direction, shared by all of
  that user's sessions.

The settings they follow may change on reload; each reads its limits from
the callable or attributes it was given at every use.  The limiter, the ban
list and the bandwidth buckets are the in-process implementations of the
shared-state protocols in :mod:`ftpserver.state.protocols`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from ftpserver.state.protocols import BandwidthBudget

__all__ = ["BanList", "Bandwidth", "PasswordGate", "SessionLimiter", "pacer"]

Clock = Callable[[], float]


class SessionLimiter:
    """Counts open sessions; refuses one over the total or the per-IP limit (0: no limit)."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self._lock = threading.Lock()
        self._count = 0
        self._by_ip: dict[str, int] = defaultdict(int)

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``; returns None, or the reason it was refused."""
        with self._lock:
            if self.total and self._count >= self.total:
                return "too many sessions on the server"
            if self.per_ip and self._by_ip[ip] >= self.per_ip:
                return "too many sessions from your address"
            self._count += 1
            self._by_ip[ip] += 1
            return None

    def configure(self, total: int, per_ip: int) -> None:
        """New limits (a reload); sessions already open stay."""
        self.total, self.per_ip = total, per_ip

    def release(self, ip: str) -> None:
        """Give back the slot taken by :meth:`acquire`."""
        with self._lock:
            self._count -= 1
            self._by_ip[ip] -= 1
            if self._by_ip[ip] <= 0:
                del self._by_ip[ip]

    @property
    def count(self) -> int:
        """Sessions open now."""
        with self._lock:
            return self._count


class BanList:
    """Failed logins per IP; ``max_failures`` within ``window`` seconds ban it for ``ban_time``."""

    def __init__(
        self, max_failures: int, window: float, ban_time: float, clock: Clock = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def configure(self, max_failures: int, window: float, ban_time: float) -> None:
        """New rules (a reload); bans already given keep their expiry."""
        self.max_failures, self.window, self.ban_time = max_failures, window, ban_time

    def is_banned(self, ip: str) -> bool:
        """Whether ``ip`` is banned now (an expired ban is forgotten)."""
        with self._lock:
            until = self._banned_until.get(ip)
            if until is None:
                return False
            if self._clock() >= until:
                del self._banned_until[ip]
                return False
            return True

    def banned(self) -> list[tuple[str, float]]:
        """The bans in force: ``(ip, seconds left)``, soonest to end first."""
        now = self._clock()
        with self._lock:
            live = {ip: until for ip, until in self._banned_until.items() if until > now}
            self._banned_until = live
        return sorted(((ip, until - now) for ip, until in live.items()), key=lambda b: b[1])

    def unban(self, ip: str) -> bool:
        """Lift the ban on ``ip`` and forget its failures; whether it was banned."""
        with self._lock:
            self._failures.pop(ip, None)
            return self._banned_until.pop(ip, None) is not None

    def failure(self, ip: str) -> bool:
        """Record a failed login; returns True if ``ip`` is now banned."""
        if not self.max_failures:
            return False
        now = self._clock()
        with self._lock:
            times = self._failures.setdefault(ip, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.max_failures:
                self._banned_until[ip] = now + self.ban_time
                del self._failures[ip]
                return True
            return False


class PasswordGate:
    """Bounds concurrent bcrypt checks and remembers recent successes for ``ttl`` seconds."""

    def __init__(self, concurrency: int, ttl: float, clock: Clock = time.monotonic) -> None:
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self.ttl = ttl
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bytes], float] = {}

    def _token(self, password: str, hashed: bytes) -> bytes:
        message = hashed + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def check(self, name: str, password: str, hashed: bytes, verify: Callable[[], bool]) -> bool:
        """Whether ``password`` is right for ``name`` with hash ``hashed``.

        A success within ``ttl`` for the same name, password and hash is taken
        from the cache; otherwise ``verify`` (the bcrypt check) runs, at most
        ``concurrency`` at a time across all sessions.
        """
        key = (name, self._token(password, hashed))
        if self._cached(key):
            return True
        with self._slots:
            # Logins that waited for a slot behind the same user's first one
            # find its success here instead of running bcrypt again.
            if self._cached(key):
                return True
            good = verify()
        now = self._clock()
        if good and self.ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache = {k: v for k, v in self._cache.items() if v > now}
                self._cache[key] = now + self.ttl
        return good

    def _cached(self, key: tuple[str, bytes]) -> bool:
        if self.ttl <= 0:
            return False
        with self._lock:
            expires = self._cache.get(key)
            return expires is not None and self._clock() < expires

    def forget(self) -> None:
        """Drop every cached success (after the users file changed)."""
        with self._lock:
            self._cache.clear()


class _Bucket:
    def __init__(self, rate: int, clock: Clock) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = float(rate)
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self, count: int) -> float:
        """Take ``count`` bytes of allowance; returns how long the caller must wait."""
        with self.lock:
            now = self.clock()
            self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= count
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Bandwidth:
    """Per-user byte rates, one bucket per (user, direction), shared by the user's sessions."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, user: str, direction: str, rate: int, count: int) -> float:
        """Spend ``count`` bytes of the user's allowance; the seconds the caller must wait."""
        with self._lock:
            bucket = self._buckets.get((user, direction))
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[(user, direction)] = _Bucket(rate, self._clock)
        return bucket.take(count)


def pacer(
    buckets: BandwidthBudget,
    user: str,
    direction: str,
    rate: int | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[int], None] | None:
    """A callback that sleeps as needed after each chunk, or None for no limit.

    ``buckets`` is a :class:`Bandwidth` or a worker's handle on the one the
    server's processes share; ``sleep`` may be one that a shutdown cuts short.
    """
    if not rate:
        return None

    def pace(count: int) -> None:
        wait = buckets.take(user, direction, rate, count)
        if wait > 0:
            sleep(wait)

    return pace

"""Unit tests of :mod:`ftpserver.guards` with a fake clock (no sockets, no sleeping).

* SessionLimiter: counts sessions in total and per IP, refuses the one over
  a limit with a reason, frees a slot on release; 0 means no limit.
* BanList: N failures within the window ban an IP for ban_time; failures
  spread wider than the window do not; a ban expires; looking at a ban does
  not extend it; bans are per IP; max_failures 0 turns bans off.
* PasswordGate: at most N checks at once; a success is cached for ttl seconds,
  failures never; another password, user or hash misses the cache.
* Bandwidth: one token bucket per (user, direction) shared by every
  throttle of that user; other users and the other direction are apart.
"""

from __future__ import annotations

import threading
import time

import pytest

from ftpserver.guards import Bandwidth, BanList, PasswordGate, SessionLimiter, pacer

pytestmark = pytest.mark.timeout(60)

IP_A = "192.0.2.1"
IP_B = "192.0.2.2"


class FakeClock:
    """A monotonic clock that moves only when told; ``sleep`` moves it and is recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- SessionLimiter ---------------------------------------------------------------


def test_limiter_counts_and_frees_slots() -> None:
    limiter = SessionLimiter(total=3, per_ip=10)
    assert [limiter.acquire(IP_A) for _ in range(3)] == [None, None, None]
    assert limiter.count == 3
    assert limiter.acquire(IP_B) == "too many sessions on the server"
    assert limiter.count == 3, "a refused session was counted"
    limiter.release(IP_A)
    assert limiter.count == 2
    assert limiter.acquire(IP_B) is None, "a released slot was not freed"
    assert limiter.count == 3


def test_limiter_per_ip() -> None:
    limiter = SessionLimiter(total=10, per_ip=2)
    assert limiter.acquire(IP_A) is None
    assert limiter.acquire(IP_A) is None
    assert limiter.acquire(IP_A) == "too many sessions from your address"
    assert limiter.acquire(IP_B) is None, "another IP was refused by IP_A's limit"
    assert limiter.count == 3
    limiter.release(IP_A)
    assert limiter.acquire(IP_A) is None, "IP_A's released slot was not freed"


def test_limiter_zero_means_no_limit() -> None:
    limiter = SessionLimiter(total=0, per_ip=0)
    assert all(limiter.acquire(IP_A) is None for _ in range(1000))
    assert limiter.count == 1000
    for _ in range(1000):
        limiter.release(IP_A)
    assert limiter.count == 0


def test_limiter_follows_changed_limits() -> None:
    """Reload sets ``total``/``per_ip`` on the live object."""
    limiter = SessionLimiter(total=0, per_ip=0)
    assert limiter.acquire(IP_A) is None
    limiter.per_ip = 1
    assert limiter.acquire(IP_A) == "too many sessions from your address"
    limiter.per_ip, limiter.total = 0, 1
    assert limiter.acquire(IP_B) == "too many sessions on the server"


def test_limiter_is_thread_safe() -> None:
    limiter = SessionLimiter(total=0, per_ip=0)

    def churn() -> None:
        for _ in range(2000):
            assert limiter.acquire(IP_A) is None
            limiter.release(IP_A)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.count == 0


# -- BanList ------------------------------------------------------------------------


def test_ban_after_n_failures_in_the_window() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=3, window=60, ban_time=300, clock=clock)
    assert bans.failure(IP_A) is False
    clock.advance(10)
    assert bans.failure(IP_A) is False
    assert not bans.is_banned(IP_A)
    clock.advance(10)
    assert bans.failure(IP_A) is True, "the third failure within 60 s did not ban"
    assert bans.is_banned(IP_A)
    assert not bans.is_banned(IP_B), "another IP was banned too"


def test_failures_wider_apart_than_the_window_do_not_ban() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=3, window=60, ban_time=300, clock=clock)
    for _ in range(10):
        assert bans.failure(IP_A) is False
        clock.advance(31)  # only two failures are ever inside 60 s
    assert not bans.is_banned(IP_A)


def test_failures_count_per_ip() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=3, window=60, ban_time=300, clock=clock)
    assert bans.failure(IP_A) is False
    assert bans.failure(IP_B) is False
    assert bans.failure(IP_A) is False
    assert bans.failure(IP_B) is False
    assert not bans.is_banned(IP_A) and not bans.is_banned(IP_B)
    assert bans.failure(IP_A) is True
    assert bans.is_banned(IP_A) and not bans.is_banned(IP_B)


def test_ban_expires_after_ban_time() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=2, window=60, ban_time=100, clock=clock)
    bans.failure(IP_A)
    assert bans.failure(IP_A) is True
    clock.advance(99.9)
    assert bans.is_banned(IP_A)
    clock.advance(0.1)
    assert not bans.is_banned(IP_A), "the ban did not expire after ban_time"


def test_checking_a_ban_does_not_extend_it() -> None:
    """Attempts while banned only look at the ban (the handler records no failure)."""
    clock = FakeClock()
    bans = BanList(max_failures=2, window=60, ban_time=100, clock=clock)
    bans.failure(IP_A)
    bans.failure(IP_A)
    for _ in range(9):
        clock.advance(10)
        assert bans.is_banned(IP_A)
    clock.advance(10)
    assert not bans.is_banned(IP_A), "looking at the ban extended it"


def test_after_a_ban_the_count_starts_again() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=3, window=600, ban_time=100, clock=clock)
    for _ in range(3):
        bans.failure(IP_A)
    clock.advance(101)
    assert not bans.is_banned(IP_A)
    assert bans.failure(IP_A) is False, "one failure after the ban banned again"
    assert not bans.is_banned(IP_A)


def test_max_failures_zero_turns_bans_off() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=0, window=60, ban_time=100, clock=clock)
    assert not any(bans.failure(IP_A) for _ in range(100))
    assert not bans.is_banned(IP_A)


def test_ban_follows_changed_settings() -> None:
    clock = FakeClock()
    bans = BanList(max_failures=10, window=60, ban_time=100, clock=clock)
    bans.failure(IP_A)
    bans.max_failures = 2
    assert bans.failure(IP_A) is True


# -- PasswordGate -------------------------------------------------------------------


class Verifier:
    """A stand-in for the bcrypt check that counts its calls."""

    def __init__(self, result: bool = True) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.result


HASH_1 = b"$2b$04$" + b"a" * 53
HASH_2 = b"$2b$04$" + b"b" * 53


def test_gate_caches_a_success_for_ttl() -> None:
    clock = FakeClock()
    gate = PasswordGate(concurrency=2, ttl=60, clock=clock)
    verify = Verifier()
    assert gate.check("alice", "pw", HASH_1, verify) is True
    assert verify.calls == 1
    for _ in range(5):
        clock.advance(10)
        assert gate.check("alice", "pw", HASH_1, verify) is True
    assert verify.calls == 1, "repeated checks within ttl ran bcrypt again"
    clock.advance(10.1)  # 60.1 s after the first check
    assert gate.check("alice", "pw", HASH_1, verify) is True
    assert verify.calls == 2, "the cached success outlived ttl"


def test_gate_never_caches_a_failure() -> None:
    gate = PasswordGate(concurrency=2, ttl=60, clock=FakeClock())
    verify = Verifier(result=False)
    assert [gate.check("alice", "bad", HASH_1, verify) for _ in range(3)] == [False] * 3
    assert verify.calls == 3


@pytest.mark.parametrize(
    ("name", "password", "hashed"),
    [
        ("alice", "other password", HASH_1),
        ("bob", "pw", HASH_1),
        ("alice", "pw", HASH_2),  # the hash changed (passwd + reload): the cache must miss
    ],
    ids=["other-password", "other-user", "changed-hash"],
)
def test_gate_cache_misses(name: str, password: str, hashed: bytes) -> None:
    gate = PasswordGate(concurrency=2, ttl=60, clock=FakeClock())
    assert gate.check("alice", "pw", HASH_1, Verifier()) is True
    wrong = Verifier(result=False)
    assert gate.check(name, password, hashed, wrong) is False, "answered from the cache"
    assert wrong.calls == 1


def test_gate_ttl_zero_and_forget() -> None:
    clock = FakeClock()
    off = PasswordGate(concurrency=2, ttl=0, clock=clock)
    verify = Verifier()
    off.check("alice", "pw", HASH_1, verify)
    off.check("alice", "pw", HASH_1, verify)
    assert verify.calls == 2, "ttl 0 still cached"
    gate = PasswordGate(concurrency=2, ttl=60, clock=clock)
    verify = Verifier()
    gate.check("alice", "pw", HASH_1, verify)
    gate.forget()
    gate.check("alice", "pw", HASH_1, verify)
    assert verify.calls == 2, "forget() kept a cached success"


def test_gate_keeps_no_password() -> None:
    password = "a very recognisable password 1234"
    gate = PasswordGate(concurrency=2, ttl=60, clock=FakeClock())
    gate.check("alice", password, HASH_1, Verifier())
    held = repr(vars(gate))
    assert password not in held
    assert password.encode() not in b"".join(key[1] for key in gate._cache)


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_gate_bounds_concurrent_checks(concurrency: int) -> None:
    gate = PasswordGate(concurrency=concurrency, ttl=0)
    lock = threading.Lock()
    running = 0
    peak = 0

    def slow_verify() -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return True

    start = threading.Barrier(8)

    def login() -> None:
        start.wait()
        assert gate.check("alice", "pw", HASH_1, slow_verify)

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert peak == concurrency, f"{peak} checks ran at once with a limit of {concurrency}"


# -- Bandwidth ----------------------------------------------------------------------


def test_no_rate_no_throttle() -> None:
    bandwidth = Bandwidth(clock=FakeClock())
    assert pacer(bandwidth, "alice", "download", None) is None
    assert pacer(bandwidth, "alice", "download", 0) is None


def test_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bandwidth = Bandwidth(clock=clock)
    pace = pacer(bandwidth, "alice", "download", 1000, clock.sleep)
    assert pace is not None
    started = clock()
    for _ in range(50):
        pace(100)  # 5000 bytes: one second of burst, then 4000 bytes at 1000 B/s
    assert clock() - started == pytest.approx(4.0, abs=0.01)


def test_bucket_is_shared_by_a_users_sessions() -> None:
    clock = FakeClock()
    bandwidth = Bandwidth(clock=clock)
    first = pacer(bandwidth, "alice", "download", 1000, clock.sleep)
    second = pacer(bandwidth, "alice", "download", 1000, clock.sleep)
    assert first is not None and second is not None
    first(1000)  # the whole burst
    assert clock.sleeps == []
    second(500)
    assert clock.sleeps == [pytest.approx(0.5)], "the second session had its own bucket"


def test_buckets_apart_per_user_and_direction() -> None:
    clock = FakeClock()
    bandwidth = Bandwidth(clock=clock)
    alice_down = pacer(bandwidth, "alice", "download", 1000, clock.sleep)
    alice_up = pacer(bandwidth, "alice", "upload", 1000, clock.sleep)
    bob_down = pacer(bandwidth, "bob", "download", 1000, clock.sleep)
    assert alice_down and alice_up and bob_down
    alice_down(1000)
    alice_up(1000)
    bob_down(1000)
    assert clock.sleeps == [], "one user's or direction's bytes were charged to another"
    alice_down(250)
    assert clock.sleeps == [pytest.approx(0.25)]


def test_bucket_refills_and_caps_at_one_second() -> None:
    clock = FakeClock()
    bandwidth = Bandwidth(clock=clock)
    pace = pacer(bandwidth, "alice", "upload", 1000, clock.sleep)
    assert pace is not None
    pace(1000)
    clock.advance(100)  # idle for long: the bucket holds at most one second's worth
    pace(1000)
    assert clock.sleeps == []
    pace(1000)
    assert clock.sleeps == [pytest.approx(1.0)]


def test_changed_rate_takes_effect() -> None:
    clock = FakeClock()
    bandwidth = Bandwidth(clock=clock)
    old = pacer(bandwidth, "alice", "download", 1000, clock.sleep)
    assert old is not None
    old(1000)
    new = pacer(bandwidth, "alice", "download", 4000, clock.sleep)
    assert new is not None
    new(4000 + 2000)
    assert clock.sleeps == [pytest.approx(0.5)], "the new rate was not applied"

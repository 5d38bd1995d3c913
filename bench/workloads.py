"""The workloads: each runs once against one started server and returns its figures.

Every function takes the :class:`~bench.servers.Running` server and the
:class:`Setup` of this benchmark run, and returns a :class:`Outcome`: the
measured metrics (the names in :data:`METRICS`) and extra facts for the JSON
file (digests, server CPU seconds, errors).  Files a run creates (downloads,
uploads) are removed before it returns.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import open_session, tls_for
from bench.measure import MIB, PeakRss, cpu_seconds, machine_busy_seconds, pss_bytes, rss_bytes
from bench.servers import Running
from bench.startup import START_KINDS, client_start_ms
from bench.stored import LocalStored, Stored, digest_file
from bench.swarm import MULTI, SMALL_DIR, swarm

__all__ = [
    "BIG",
    "METRICS",
    "MULTI",
    "S3_KINDS",
    "SMALL_DIR",
    "WORKLOADS",
    "Metric",
    "Outcome",
    "Setup",
    "Workload",
]

BIG = "big.bin"


@dataclass(frozen=True)
class Metric:
    """One figure in the table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    digits: int = 0


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("big_down", "1 file download", "MiB/s"),
        Metric("big_up", "1 file upload", "MiB/s"),
        Metric("big_up_rss", "server peak RSS, 1 file upload", "MiB", False, 1),
        Metric("multi_down", "{clients} clients download", "MiB/s"),
        Metric("multi_up", "{clients} clients upload", "MiB/s"),
        Metric("small", "{clients} clients small commands", "req/s"),
        Metric("session_ms", "connect+login+quit", "ms", False, 2),
        Metric("login_ms", "repeated login", "ms", False, 2),
        Metric("first_login_ms", "first login (bcrypt)", "ms", False, 1),
        Metric("rss_idle", "RSS idle server", "MiB", False, 1),
        Metric("rss_sessions", "RSS with {idle} idle sessions", "MiB", False, 1),
        Metric("rss_delta", "RSS added by {idle} sessions", "MiB", False, 1),
        Metric("pss_idle", "PSS idle server", "MiB", False, 1),
        Metric("pss_sessions", "PSS with {idle} idle sessions", "MiB", False, 1),
        Metric("crowd_alone", "{clients} clients' requests, alone", "req/s"),
        Metric("crowd_busy", "{clients} clients' requests, crowd idle", "req/s"),
        Metric("crowd_rss", "RSS with the idle crowd", "MiB", False, 1),
        Metric("crowd_pss", "PSS with the idle crowd", "MiB", False, 1),
        Metric("start_ms", "client start: connect, log in, pwd", "ms", False, 1),
    )
}


@dataclass
class Setup:
    """Everything the runs share: paths, sizes and options."""

    tmp: Path
    src: Path  # the local files clients send
    out: Path  # where clients put downloads
    homes: dict[str, Path]  # server kind -> the benchmark user's home
    big_size: int
    big_digest: str
    multi_size: int
    multi_digest: str
    clients: int
    client_procs: int
    idle: int
    commands: int
    crowd: int  # idle logged-in sessions of the crowd workload
    latency_runs: int
    s3: Stored | None = None  # ours-s3's home in the bucket (bench.s3columns), if it runs
    missing: dict[str, str] = field(default_factory=dict)  # column -> why it cannot run

    def stored(self, kind: str) -> Stored:
        """Where server ``kind`` keeps the benchmark user's files."""
        if kind == "ours-s3" and self.s3 is not None:
            return self.s3
        return LocalStored(self.homes[kind])


@dataclass
class Outcome:
    """What one run measured."""

    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


Workload = Callable[[Running, Setup], Outcome]


def _own_cpu() -> float:
    """CPU seconds of this process (the client of the one-file runs)."""
    times = os.times()
    return times.user + times.system


def _settle() -> None:
    """Flush dirty pages of earlier runs so they do not slow this one."""
    os.sync()


# -- a. one big file ------------------------------------------------------------


def _big_transfer(server: Running, setup: Setup, direction: str, result: str) -> Outcome:
    """Move the big file once (``down`` or ``up``) and check ``result``, where it lands.

    Timed from the request until the client holds the verified file (down) or
    the server confirmed it stored it (up); CPU of the server, this process
    and the rest of the machine meanwhile go into the extra figures, and for
    an upload the server's peak RSS.
    """
    _settle()
    session = open_session(server.info)
    cpu, mine, busy = cpu_seconds(server.pid), _own_cpu(), machine_busy_seconds()
    peak = PeakRss(server.pid)  # sampled during an upload only
    with peak if direction == "up" else contextlib.nullcontext():
        started = time.perf_counter()
        if direction == "down":
            size = session.download(BIG, result)
        else:
            size = session.upload(str(setup.src / BIG), result)
        seconds = time.perf_counter() - started
    cpu, mine = cpu_seconds(server.pid) - cpu, _own_cpu() - mine
    other = machine_busy_seconds() - busy - cpu - mine
    session.quit()
    stored = setup.stored(server.info.kind)
    landed = Path(result).stat().st_size if direction == "down" else stored.size(result)
    if size != setup.big_size or landed != setup.big_size:
        raise RuntimeError(f"moved {size} bytes {direction}, expected {setup.big_size}")
    if session.last_digest:
        checked = session.last_digest
    else:
        checked = digest_file(Path(result)) if direction == "down" else stored.digest(result)
    if checked != setup.big_digest:
        raise RuntimeError(f"the file moved {direction} differs from the original")
    extra: dict[str, Any] = {"seconds": seconds, "server_cpu_s": cpu, "client_cpu_s": mine}
    extra.update(other_cpu_s=other, blake3=checked)
    verifier = "verified_by_client" if direction == "down" else "verified_by_server"
    extra[verifier] = bool(session.last_digest)
    metrics = {f"big_{direction}": size / MIB / seconds}
    if direction == "up":
        metrics["big_up_rss"] = peak.peak / MIB
    return Outcome(metrics, extra)


def big_download(server: Running, setup: Setup) -> Outcome:
    """Download the big file once; MiB/s from the request to the verified file on disk."""
    local = setup.out / f"{server.info.kind}-{BIG}"
    try:
        return _big_transfer(server, setup, "down", str(local))
    finally:
        LocalStored(setup.out).remove(local.name)  # and its .part


def big_upload(server: Running, setup: Setup) -> Outcome:
    """Upload the big file once; MiB/s until the server confirmed it was stored."""
    stored = setup.stored(server.info.kind)
    try:
        return _big_transfer(server, setup, "up", f"up-{BIG}")
    finally:
        stored.remove(f"up-{BIG}")


# -- b. and c. many clients at once ----------------------------------------------


def _warm_login(server: Running) -> None:
    """One login before the clients start, so ours has the password check cached."""
    open_session(server.info).quit()


def multi_download(server: Running, setup: Setup) -> Outcome:
    """N clients (connected and logged in) each download the 10 MiB file at once."""
    try:
        _warm_login(server)
        _settle()
        facts = swarm(server, setup, "download")
        expected = setup.clients * setup.multi_size
        if facts["bytes"] != expected:
            raise RuntimeError(f"moved {facts['bytes']} bytes, expected {expected}")
        received = sorted(setup.out.glob("dl-*.bin"))
        if len(received) != setup.clients or digest_file(received[0]) != setup.multi_digest:
            raise RuntimeError("the downloaded files are not all there or differ")
        return Outcome({"multi_down": facts["bytes"] / MIB / facts["seconds"]}, facts)
    finally:
        LocalStored(setup.out).remove("dl-")


def multi_upload(server: Running, setup: Setup) -> Outcome:
    """N clients (connected and logged in) each upload the 10 MiB file at once."""
    stored = setup.stored(server.info.kind)
    try:
        _warm_login(server)
        _settle()
        facts = swarm(server, setup, "upload")
        expected = setup.clients * setup.multi_size
        names = [name for name in stored.names("up-") if name.endswith(".bin")]
        if facts["bytes"] != expected or len(names) != setup.clients:
            raise RuntimeError(f"stored {len(names)} files, expected {setup.clients}")
        if stored.digest(names[-1]) != setup.multi_digest:
            raise RuntimeError("an uploaded file differs from the original")
        return Outcome({"multi_up": facts["bytes"] / MIB / facts["seconds"]}, facts)
    finally:
        stored.remove("up-")


def small_commands(server: Running, setup: Setup) -> Outcome:
    """N clients at once each connect, log in, send 50 commands (pwd / ls) and quit."""
    _warm_login(server)
    facts = swarm(server, setup, "small")
    expected = setup.clients * (setup.commands + 1)
    if facts["requests"] != expected:
        raise RuntimeError(f"{facts['requests']} requests answered, expected {expected}")
    return Outcome({"small": facts["requests"] / facts["seconds"]}, facts)


# -- d. logins ----------------------------------------------------------------------


def login_latency(server: Running, setup: Setup) -> Outcome:
    """The first login on a fresh server, then ``latency_runs`` connect+login+quit in a row."""
    tls = tls_for(server.info)
    session = open_session(server.info, login=False, tls=tls)
    started = time.perf_counter()
    session.login()
    first = time.perf_counter() - started
    session.quit()
    totals: list[float] = []
    logins: list[float] = []
    for _ in range(setup.latency_runs):
        t0 = time.perf_counter()
        session = open_session(server.info, login=False, tls=tls)
        t1 = time.perf_counter()
        session.login()
        t2 = time.perf_counter()
        session.quit()
        t3 = time.perf_counter()
        totals.append(t3 - t0)
        logins.append(t2 - t1)
    totals.sort()
    logins.sort()
    metrics = {
        "session_ms": 1000 * totals[len(totals) // 2],
        "login_ms": 1000 * logins[len(logins) // 2],
        "first_login_ms": 1000 * first,
    }
    extra = {
        "session_ms_all": [1000 * t for t in totals],
        "login_ms_all": [1000 * t for t in logins],
    }
    return Outcome(metrics, extra)


# -- e. memory ------------------------------------------------------------------------


def idle_memory(server: Running, setup: Setup, settle: float = 2.0) -> Outcome:
    """Server RSS and PSS before and with ``idle`` logged-in sessions open (and doing nothing).

    Summed RSS counts the pages forked workers share with the main process
    once per process; summed PSS counts each page once in all.
    """
    time.sleep(0.5)
    idle, idle_pss = rss_bytes(server.pid), pss_bytes(server.pid)
    tls = tls_for(server.info)
    sessions = []
    try:
        for _ in range(setup.idle):
            sessions.append(open_session(server.info, tls=tls))
        time.sleep(settle)
        busy, busy_pss = rss_bytes(server.pid), pss_bytes(server.pid)
    finally:
        for session in sessions:
            session.close()
    metrics = {
        "rss_idle": idle / MIB,
        "rss_sessions": busy / MIB,
        "rss_delta": (busy - idle) / MIB,
        "pss_idle": idle_pss / MIB,
        "pss_sessions": busy_pss / MIB,
    }
    return Outcome(
        metrics,
        {"sessions": len(sessions), "per_session_kib": (busy - idle) / 1024 / len(sessions)},
    )


# -- f. a crowd of idle sessions ------------------------------------------------------


def crowd(server: Running, setup: Setup, settle: float = 2.0) -> Outcome:
    """``--crowd`` idle logged-in sessions, and ``--clients`` active ones beside them.

    First the active clients alone on the fresh server: each logged in, then
    released together for ``--commands`` requests (pwd and ls in turn).  Then
    the crowd logs in, one session after another, and after ``settle``
    seconds the server's memory is read; the same active clients run again
    beside it.  Last, every session of the crowd must still answer a pwd.
    """
    _warm_login(server)
    alone = swarm(server, setup, "chatter")
    idle = rss_bytes(server.pid), pss_bytes(server.pid)
    tls = tls_for(server.info)
    sessions = []
    try:
        started = time.monotonic()
        for _ in range(setup.crowd):
            sessions.append(open_session(server.info, tls=tls))
        opened = time.monotonic() - started
        time.sleep(settle)
        full = rss_bytes(server.pid), pss_bytes(server.pid)
        busy = swarm(server, setup, "chatter")
        for session in sessions:
            session.pwd()
    finally:
        for session in sessions:
            session.close()
    metrics = {
        "crowd_alone": alone["requests"] / alone["seconds"],
        "crowd_busy": busy["requests"] / busy["seconds"],
        "crowd_rss": full[0] / MIB,
        "crowd_pss": full[1] / MIB,
    }
    extra = {
        "sessions": len(sessions),
        "login_s": round(opened, 2),
        "rss_idle_mib": idle[0] / MIB,
        "pss_idle_mib": idle[1] / MIB,
        "rss_per_session_kib": (full[0] - idle[0]) / 1024 / len(sessions),
        "alone": alone,
        "busy": busy,
    }
    return Outcome(metrics, extra)


# -- g. a new client process per command ----------------------------------------------


def client_start(server: Running, setup: Setup) -> Outcome:
    """``latency_runs`` client commands (connect, log in, pwd, quit) in a row: bench/startup.py."""
    median, every = client_start_ms(server, setup.latency_runs, setup.tmp)
    return Outcome({"start_ms": median}, {"start_ms_all": every})


# -- the table of workloads ---------------------------------------------------------------

S3_KINDS = ("ours-s3", "boto3")  # bench.s3columns
TRANSFER_KINDS = ("ours", "ours-tls", "pyftpdlib", "plain", *S3_KINDS)
SESSION_KINDS = ("ours", "ours-tls", "pyftpdlib")

WORKLOADS: dict[str, tuple[Workload, tuple[str, ...]]] = {
    "big-down": (big_download, TRANSFER_KINDS),
    "big-up": (big_upload, (*TRANSFER_KINDS, "ours-fsync")),
    "multi-down": (multi_download, TRANSFER_KINDS),
    "multi-up": (multi_upload, (*TRANSFER_KINDS, "ours-fsync")),
    "small": (small_commands, SESSION_KINDS),
    "login": (login_latency, SESSION_KINDS),
    "memory": (idle_memory, SESSION_KINDS),
    "crowd": (crowd, ("ours",)),
    "start": (client_start, START_KINDS),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "a": ("big-down", "big-up"),
    "b": ("multi-down", "multi-up"),
    "c": ("small",),
    "d": ("login",),
    "e": ("memory",),
    "f": ("crowd",),
    "g": ("start",),
}

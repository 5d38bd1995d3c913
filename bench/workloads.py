"""The workloads: each runs once against one started server and returns its figures.

Every function takes the :class:`~bench.servers.Running` server and the
:class:`Setup` of this benchmark run, and returns a :class:`Outcome`: the
measured metrics (the names in :data:`METRICS`) and extra facts for the JSON
file (digests, server CPU seconds, errors).  Files a run creates (downloads,
uploads) are removed before it returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import open_session, tls_for
from bench.environment import child_env
from bench.measure import MIB, cpu_seconds, machine_busy_seconds, rss_bytes
from bench.servers import Running
from ftpproto.digest import new_hasher

__all__ = ["METRICS", "WORKLOADS", "Metric", "Outcome", "Setup", "Workload"]

BIG = "big.bin"
MULTI = "multi.bin"
SMALL_DIR = "small"


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
        Metric("multi_down", "{clients} clients download", "MiB/s"),
        Metric("multi_up", "{clients} clients upload", "MiB/s"),
        Metric("small", "{clients} clients small commands", "req/s"),
        Metric("session_ms", "connect+login+quit", "ms", False, 2),
        Metric("login_ms", "repeated login", "ms", False, 2),
        Metric("first_login_ms", "first login (bcrypt)", "ms", False, 1),
        Metric("rss_idle", "RSS idle server", "MiB", False, 1),
        Metric("rss_sessions", "RSS with {idle} idle sessions", "MiB", False, 1),
        Metric("rss_delta", "RSS added by {idle} sessions", "MiB", False, 1),
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
    latency_runs: int


@dataclass
class Outcome:
    """What one run measured."""

    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


Workload = Callable[[Running, Setup], Outcome]


def _digest_file(path: Path) -> str:
    hasher = new_hasher()
    with open(path, "rb") as source:
        while chunk := source.read(4 * MIB):
            hasher.update(chunk)
    return hasher.hexdigest()


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _own_cpu() -> float:
    """CPU seconds of this process (the client of the one-file runs)."""
    times = os.times()
    return times.user + times.system


def _settle() -> None:
    """Flush dirty pages of earlier runs so they do not slow this one."""
    os.sync()


# -- a. one big file ------------------------------------------------------------


def _big_transfer(server: Running, setup: Setup, direction: str, result: Path) -> Outcome:
    """Move the big file once (``down`` or ``up``) and check ``result``, where it lands.

    Timed from the request until the client holds the verified file (down) or
    the server confirmed it stored it (up); CPU of the server, this process
    and the rest of the machine meanwhile go into the extra figures.
    """
    _settle()
    session = open_session(server.info)
    cpu, mine, busy = cpu_seconds(server.pid), _own_cpu(), machine_busy_seconds()
    started = time.perf_counter()
    if direction == "down":
        size = session.download(BIG, str(result))
    else:
        size = session.upload(str(setup.src / BIG), result.name)
    seconds = time.perf_counter() - started
    cpu, mine = cpu_seconds(server.pid) - cpu, _own_cpu() - mine
    other = machine_busy_seconds() - busy - cpu - mine
    session.quit()
    if size != setup.big_size or result.stat().st_size != setup.big_size:
        raise RuntimeError(f"moved {size} bytes {direction}, expected {setup.big_size}")
    checked = session.last_digest or _digest_file(result)
    if checked != setup.big_digest:
        raise RuntimeError(f"the file moved {direction} differs from the original")
    extra: dict[str, Any] = {"seconds": seconds, "server_cpu_s": cpu, "client_cpu_s": mine}
    extra.update(other_cpu_s=other, blake3=checked)
    verifier = "verified_by_client" if direction == "down" else "verified_by_server"
    extra[verifier] = bool(session.last_digest)
    return Outcome({f"big_{direction}": size / MIB / seconds}, extra)


def big_download(server: Running, setup: Setup) -> Outcome:
    """Download the big file once; MiB/s from the request to the verified file on disk."""
    local = setup.out / f"{server.info.kind}-{BIG}"
    try:
        return _big_transfer(server, setup, "down", local)
    finally:
        _remove([local, Path(str(local) + ".part")])


def big_upload(server: Running, setup: Setup) -> Outcome:
    """Upload the big file once; MiB/s until the server confirmed it was stored."""
    remote = setup.homes[server.info.kind] / f"up-{BIG}"
    try:
        return _big_transfer(server, setup, "up", remote)
    finally:
        _remove([remote])


# -- b. and c. many clients at once ----------------------------------------------


def _spread(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("a load worker did not answer in time")
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a load worker exited ({process.wait()})")
            return line.strip()


def _swarm(server: Running, setup: Setup, task: str, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``task`` with ``setup.clients`` clients spread over worker processes."""
    workers: list[subprocess.Popen[str]] = []
    deadline = time.monotonic() + timeout
    try:
        for index, threads in enumerate(_spread(setup.clients, setup.client_procs)):
            spec = {
                "info": asdict(server.info),
                "task": task,
                "threads": threads,
                "index": index,
                "remote": MULTI,
                "local": str(setup.src / MULTI),
                "outdir": str(setup.out),
                "commands": setup.commands,
                "ls_path": SMALL_DIR,
            }
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=child_env(),
                )
            )
        for worker in workers:
            if _read_line(worker, deadline) != "ready":
                raise RuntimeError("a load worker did not get ready")
        cpu, busy = cpu_seconds(server.pid), machine_busy_seconds()
        started = time.monotonic()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(_read_line(worker, deadline)) for worker in workers]
        cpu, busy = cpu_seconds(server.pid) - cpu, machine_busy_seconds() - busy
        for worker in workers:
            worker.wait(30)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    seconds = max(r["end"] for r in results) - started
    errors = [e for r in results for e in r["errors"]]
    if errors:
        raise RuntimeError(f"{len(errors)}+ client errors, first: {errors[0]}")
    return {
        "seconds": seconds,
        "bytes": sum(r["bytes"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "server_cpu_s": cpu,
        "client_cpu_s": sum(r["cpu"] for r in results),
        "other_cpu_s": busy - cpu - sum(r["cpu"] for r in results),
    }


def _warm_login(server: Running) -> None:
    """One login before the clients start, so ours has the password check cached."""
    open_session(server.info).quit()


def multi_download(server: Running, setup: Setup) -> Outcome:
    """N clients (connected and logged in) each download the 10 MiB file at once."""
    try:
        _warm_login(server)
        _settle()
        facts = _swarm(server, setup, "download")
        expected = setup.clients * setup.multi_size
        if facts["bytes"] != expected:
            raise RuntimeError(f"moved {facts['bytes']} bytes, expected {expected}")
        received = sorted(setup.out.glob("dl-*.bin"))
        if len(received) != setup.clients or _digest_file(received[0]) != setup.multi_digest:
            raise RuntimeError("the downloaded files are not all there or differ")
        return Outcome({"multi_down": facts["bytes"] / MIB / facts["seconds"]}, facts)
    finally:
        _remove(list(setup.out.glob("dl-*")))


def multi_upload(server: Running, setup: Setup) -> Outcome:
    """N clients (connected and logged in) each upload the 10 MiB file at once."""
    home = setup.homes[server.info.kind]
    try:
        _warm_login(server)
        _settle()
        facts = _swarm(server, setup, "upload")
        expected = setup.clients * setup.multi_size
        stored = sorted(home.glob("up-*.bin"))
        if facts["bytes"] != expected or len(stored) != setup.clients:
            raise RuntimeError(f"stored {len(stored)} files, expected {setup.clients}")
        if _digest_file(stored[-1]) != setup.multi_digest:
            raise RuntimeError("an uploaded file differs from the original")
        return Outcome({"multi_up": facts["bytes"] / MIB / facts["seconds"]}, facts)
    finally:
        _remove(list(home.glob("up-*")))


def small_commands(server: Running, setup: Setup) -> Outcome:
    """N clients at once each connect, log in, send 50 commands (pwd / ls) and quit."""
    _warm_login(server)
    facts = _swarm(server, setup, "small")
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
    """Server RSS before and with ``idle`` logged-in sessions open (and doing nothing)."""
    time.sleep(0.5)
    idle = rss_bytes(server.pid)
    tls = tls_for(server.info)
    sessions = []
    try:
        for _ in range(setup.idle):
            sessions.append(open_session(server.info, tls=tls))
        time.sleep(settle)
        busy = rss_bytes(server.pid)
    finally:
        for session in sessions:
            session.close()
    metrics = {
        "rss_idle": idle / MIB,
        "rss_sessions": busy / MIB,
        "rss_delta": (busy - idle) / MIB,
    }
    return Outcome(
        metrics,
        {"sessions": len(sessions), "per_session_kib": (busy - idle) / 1024 / len(sessions)},
    )


# -- the table of workloads ---------------------------------------------------------------

TRANSFER_KINDS = ("ours", "ours-tls", "pyftpdlib", "plain")
SESSION_KINDS = ("ours", "ours-tls", "pyftpdlib")

WORKLOADS: dict[str, tuple[Workload, tuple[str, ...]]] = {
    "big-down": (big_download, TRANSFER_KINDS),
    "big-up": (big_upload, (*TRANSFER_KINDS, "ours-fsync")),
    "multi-down": (multi_download, TRANSFER_KINDS),
    "multi-up": (multi_upload, (*TRANSFER_KINDS, "ours-fsync")),
    "small": (small_commands, SESSION_KINDS),
    "login": (login_latency, SESSION_KINDS),
    "memory": (idle_memory, SESSION_KINDS),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "a": ("big-down", "big-up"),
    "b": ("multi-down", "multi-up"),
    "c": ("small",),
    "d": ("login",),
    "e": ("memory",),
}

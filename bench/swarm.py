"""Many clients at once: load worker processes (:mod:`bench.loadgen`) started, released and read.

:func:`swarm` spreads ``setup.clients`` client threads over
``setup.client_procs`` processes, waits until every one is ready, releases
them together and sums what they report: bytes, requests, CPU and the time
until the last one finished.  Any client error fails the run.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bench.environment import child_env
from bench.measure import cpu_seconds, machine_busy_seconds
from bench.servers import Running

if TYPE_CHECKING:
    from bench.workloads import Setup

__all__ = ["MULTI", "SMALL_DIR", "swarm"]

MULTI = "multi.bin"  # the file of the concurrent transfers
SMALL_DIR = "small"  # the folder the small commands list


def _spread(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("a load worker did not answer in time")
        poller = select.poll()  # not select(): beside the crowd, descriptors pass 1024
        poller.register(process.stdout, select.POLLIN)
        if poller.poll(1000 * left):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a load worker exited ({process.wait()})")
            return line.strip()


def swarm(server: Running, setup: Setup, task: str, timeout: float = 900.0) -> dict[str, Any]:
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

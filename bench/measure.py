"""Small measuring helpers: process memory and CPU from ``/proc``, and summary statistics.

Memory is ``VmRSS`` from ``/proc/PID/status`` (what ``ps`` shows as RSS;
``Pss`` from ``/proc/PID/smaps_rollup`` counts shared pages once),
CPU time is ``utime + stime`` from ``/proc/PID/stat``, both summed over the
server process and its worker processes, and the whole
machine's busy time comes from ``/proc/stat`` (to see CPU used by processes
outside the benchmark during a run); none of them needs psutil.
:func:`rotated` gives the order of the servers (or clients) in each repetition.
"""

from __future__ import annotations

import os
import statistics
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

__all__ = [
    "MIB",
    "PeakRss",
    "Summary",
    "cpu_seconds",
    "machine_busy_seconds",
    "process_tree",
    "pss_bytes",
    "rotated",
    "rss_bytes",
    "summarize",
    "time_wait_sockets",
]

MIB = 1024 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")
_T = TypeVar("_T")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server with worker processes)."""
    found = [pid]
    for current in found:
        try:
            with open(f"/proc/{current}/task/{current}/children") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def _vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` and its descendants, summed, in bytes.

    Summing counts pages that forked workers share with their parent once
    per process, so a multi-process server is overstated, never understated.
    """
    total = 0
    for member in process_tree(pid):
        try:
            total += _vm_rss(member)
        except (OSError, RuntimeError):
            if member == pid:
                raise
    return total


@dataclass
class PeakRss:
    """The highest :func:`rss_bytes` of ``pid``, read every ``every`` s during a ``with`` block."""

    pid: int
    every: float = 0.05
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def pss_bytes(pid: int) -> int:
    """The proportional set size of ``pid`` and its descendants, summed, in bytes.

    Each shared page counts as its share per process (``Pss`` in
    ``/proc/PID/smaps_rollup``), so forked workers are not counted twice.
    """
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            if member == pid:
                raise
    return total


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by ``pid`` and its descendants (all threads)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += _cpu(member)
        except OSError:
            if member == pid:
                raise
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``, not idle or iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user and nice
    return (sum(fields) - idle - guest) / _TICKS


def time_wait_sockets() -> int:
    """TCP connections in TIME_WAIT on this machine (each holds a local port for 60 s)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                count += sum(1 for row in rows if row.split(None, 4)[3] == "06")
        except OSError:
            continue
    return count


@dataclass(frozen=True)
class Summary:
    """Median, lowest and highest of the repetitions."""

    median: float
    low: float
    high: float
    count: int

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly form."""
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.count}


def summarize(values: list[float]) -> Summary | None:
    """The summary of ``values``, or None when there are none."""
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values))


def rotated(order: list[_T], rep: int) -> list[_T]:
    """``order`` as repetition ``rep`` (from 1) runs it: each item goes first in turn."""
    shift = (rep - 1) % len(order)
    return order[shift:] + order[:shift]

"""The cluster workload's figures: medians, where the CPU went, the targets of issue 13.

:class:`ClusterResults` collects one value per run and side (``single``,
``cluster``) and the CPU seconds each group of processes used during the
small-commands runs (:data:`GROUPS`); :meth:`ClusterResults.report` prints
the medians, the CPU shares and the three targets, and returns the JSON
document that ``python -m bench`` stores under ``"cluster"``.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.measure import cpu_seconds

__all__ = ["GROUPS", "ClusterResults", "CpuProbe"]

# The processes whose CPU is counted during the small-commands runs.
GROUPS = ("nodes", "haproxy", "postgres", "clients", "other")
SMALL_RATIO = 0.8  # cluster req/s >= 0.8 x the single node's
LOGIN_MS = 2.0  # repeated login through HAProxy
BIG_RATIO = 0.8  # the big download through HAProxy >= 0.8 x the direct one
BUSY_PCT = 25  # "other" CPU (% of one core) above which a run shared the machine


class CpuProbe:
    """CPU seconds of process trees (by group) between :meth:`start` and :meth:`stop`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    continue
            found[name] = total
        return found

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> dict[str, float]:
        after = self._now()
        return {name: after[name] - self._before.get(name, 0.0) for name in after}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class ClusterResults:
    """Every run's figures, per side and metric, and the CPU of each small-commands run."""

    setting: dict[str, Any]
    runs: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {"single": {}, "cluster": {}}
    )
    cpu: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {"single": [], "cluster": []}
    )
    loads: list[tuple[str, list[float]]] = field(default_factory=list)

    def add(self, side: str, metric: str, value: float) -> None:
        self.runs[side].setdefault(metric, []).append(value)

    def add_cpu(self, side: str, used: dict[str, float], seconds: float) -> None:
        """CPU per group during one small-commands run of ``seconds``, as % of one core."""
        self.cpu[side].append({k: round(100 * v / seconds, 1) for k, v in used.items()})

    def note_load(self, when: str) -> None:
        self.loads.append((when, [round(x, 2) for x in os.getloadavg()]))

    def median(self, side: str, metric: str) -> float:
        return _median(self.runs[side].get(metric, []))

    def _cpu_line(self, side: str) -> str:
        rows = self.cpu[side]
        if not rows:
            return ""
        parts = [f"{g} {_median([r[g] for r in rows if g in r]):.0f}%" for g in rows[0]]
        return f"  CPU during small, {side} (% of one core, medians): " + ", ".join(parts)

    def report(self) -> dict[str, Any]:
        """Print the figures and targets; the JSON document."""
        single, cluster = self.median("single", "small"), self.median("cluster", "small")
        login = self.median("cluster", "login_ms")
        ratio = cluster / single if single else float("nan")
        targets = [
            ("cluster small req/s >= 0.8x single", ratio, ratio >= SMALL_RATIO),
            ("cluster repeated login <= 2 ms", login, login <= LOGIN_MS),
        ]
        print(f"cluster: {self.setting['description']}")
        print(f"  small commands: single {single:.0f} req/s, cluster {cluster:.0f} req/s: "
              f"{ratio:.2f}x (target >= {SMALL_RATIO}x)")  # fmt: skip
        print(f"  repeated login: single {self.median('single', 'login_ms'):.2f} ms, cluster "
              f"{login:.2f} ms (target <= {LOGIN_MS:g} ms)")  # fmt: skip
        for side in ("single", "cluster"):
            line = self._cpu_line(side)
            if line:
                print(line)
        if self.runs["single"].get("big_down"):
            direct, proxied = self.median("single", "big_down"), self.median("cluster", "big_down")
            big = proxied / direct if direct else float("nan")
            size = self.setting["size_mib"]
            print(f"  {size} MiB download: direct {direct:.0f} MiB/s, through HAProxy "
                  f"{proxied:.0f} MiB/s: {big:.2f}x (target >= {BIG_RATIO}x)")  # fmt: skip
            targets.append(("cluster big download >= 0.8x direct", big, big >= BIG_RATIO))
        for name, measured, passed in targets:
            print(f"  {'PASS' if passed else 'FAIL'} {name} (measured {measured:.2f})")
        busy = [r for rows in self.cpu.values() for r in rows if r.get("other", 0) > BUSY_PCT]
        if busy:
            total = sum(len(rows) for rows in self.cpu.values())
            print(f"  busy machine: in {len(busy)} of {total} small-commands runs other processes"
                  f" used more than {BUSY_PCT}% of a core")  # fmt: skip
        for when, load in self.loads:
            print(f"  load average {when}: {load[0]} {load[1]} {load[2]} (1, 5, 15 min)")
        return {
            "setting": self.setting,
            "medians": {
                side: {metric: _median(values) for metric, values in by_metric.items()}
                for side, by_metric in self.runs.items()
            },
            "runs": self.runs,
            "cpu_pct_small": self.cpu,
            "targets": [{"name": n, "measured": m, "pass": p} for n, m, p in targets],
            "load_average": dict(self.loads),
        }

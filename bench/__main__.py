"""``python -m bench``: our server side by side with the plain-socket limit and pyftpdlib.

Runs every selected workload ``--reps`` times (the one-file workloads
``--big-reps`` times) on 127.0.0.1, alternating the servers run by run and
rotating which goes first (A B C, B C A, C A B: disk speed swings between
runs), starting a fresh server process for every run.  Prints a table of
medians with min and max, the targets of issue 6 as ratios from this run,
and writes the figures and every single run to a JSON file.  Temporary files live in one temporary
folder, removed at the end; every server and load worker is stopped in a
``finally`` block.  The tree workloads of issue 15 (``--only t``, not run by
default) are in :mod:`bench.treebench`, the cluster workload of issue 13
(``--only cluster``, not run by default) in :mod:`bench.cluster`; the
options are :mod:`bench.options`', the test files, users and server configs
:mod:`bench.prepare`'s, the ``ours-s3`` and ``boto3`` columns (workloads a
and b on a throwaway SeaweedFS) :mod:`bench.s3columns`'.  See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from bench import cluster, report, treebench, treereport
from bench.environment import (
    bench_python,
    bench_versions,
    raise_open_files_limit,
)
from bench.measure import MIB, machine_busy_seconds, rotated, time_wait_sockets
from bench.options import parser, reps, scale, selected
from bench.prepare import machine, prepare
from bench.s3columns import BOTO3_RUNS, S3Stored
from bench.servers import (
    Kind,
    is_alive,
    running,
)
from bench.startup import compile_ours
from bench.workloads import METRICS, WORKLOADS, Outcome, Setup


def _show(outcome: Outcome) -> str:
    """One run's figures, with the CPU the server and the clients used during it."""
    text = ", ".join(
        f"{k} {v:.{METRICS[k].digits}f} {METRICS[k].unit}" for k, v in outcome.metrics.items()
    )
    seconds = outcome.extra.get("seconds")
    if seconds:
        server = 100 * outcome.extra.get("server_cpu_s", 0) / seconds
        client = 100 * outcome.extra.get("client_cpu_s", 0) / seconds
        other = 100 * outcome.extra.get("other_cpu_s", 0) / seconds
        text += f"  (CPU: server {server:.0f}%, clients {client:.0f}%, other {other:.0f}%;"
        text += f" {seconds:.2f} s)"
    return text


def _wait_for_ports(limit: int = 5000, patience: float = 60.0) -> int:
    """Wait until fewer than ``limit`` sockets are in TIME_WAIT; return how many are left.

    FTP opens a new data connection for every listing, so pyftpdlib's runs of
    the small-commands workload leave thousands of sockets in TIME_WAIT, each
    holding a local port for 60 s; with most of the ephemeral ports held,
    binding and connecting slow down and the next runs would pay for it.
    """
    deadline = time.monotonic() + patience
    count = time_wait_sockets()
    while count >= limit and time.monotonic() < deadline:
        time.sleep(2.0)
        count = time_wait_sockets()
    return count


def _run_all(
    names: list[str], kinds: list[Kind], setup: Setup, args: argparse.Namespace, logs: Path
) -> tuple[report.Values, list[dict[str, Any]]]:
    values: report.Values = {}
    runs: list[dict[str, Any]] = []
    pids: list[int] = []
    for name in names:
        workload, applies = WORKLOADS[name]
        order = [k for k in kinds if k.name in applies]
        count = reps(name, args)
        for rep in range(1, count + 1):
            for kind in rotated(order, rep):
                record: dict[str, Any] = {"workload": name, "rep": rep, "server": kind.name}
                record["time_wait_before"] = _wait_for_ports()
                started = time.monotonic()
                try:
                    if kind.name == "boto3":  # no server of ours: boto3 alone on the store
                        outcome = BOTO3_RUNS[name](setup)
                    else:
                        with running(kind, logs) as server:
                            pids.append(server.pid)
                            outcome = workload(server, setup)
                    record.update(metrics=outcome.metrics, extra=outcome.extra)
                    for key, value in outcome.metrics.items():
                        values.setdefault(key, {}).setdefault(kind.name, []).append(value)
                    text = _show(outcome)
                except Exception as exc:
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    text = "ERROR " + record["error"]
                    traceback.print_exc()
                record["wall_s"] = round(time.monotonic() - started, 2)
                runs.append(record)
                print(f"[{name} {rep}/{count}] {kind.name:10} {text}", flush=True)
    left = [pid for pid in pids if is_alive(pid)]
    if left:
        print(f"warning: server processes still alive: {left}")
    return values, runs


def _disturbed(runs: list[dict[str, Any]], limit: float = 0.25) -> str:
    """Which runs shared the machine with other busy processes, per workload."""
    counts: dict[str, list[int]] = {}
    for run in runs:
        extra = run.get("extra", {})
        if "other_cpu_s" not in extra or not extra.get("seconds"):
            continue
        tally = counts.setdefault(run["workload"], [0, 0])
        tally[1] += 1
        if extra["other_cpu_s"] / extra["seconds"] > limit:
            tally[0] += 1
    return ", ".join(f"{name} {busy}/{total}" for name, (busy, total) in counts.items() if busy)


def _run_cluster(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The cluster workload (its own servers); its JSON document, or the error it met."""
    print()
    try:
        return cluster.run(args, tmp)
    except Exception as exc:
        traceback.print_exc()
        print(f"cluster: ERROR {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run measured, 1 if some failed."""
    args = parser().parse_args(argv)
    names = selected(args.only)
    trees = [n for n in names if n in treebench.TREE_WORKLOADS]
    clusters = [n for n in names if n in cluster.CLUSTER_WORKLOADS]
    names = [n for n in names if n not in (*treebench.TREE_WORKLOADS, *clusters)]
    signal.signal(signal.SIGTERM, _terminate)  # clean up (servers, files) as on Ctrl-C
    files = raise_open_files_limit()
    if "crowd" in names and files < args.crowd + 1024:
        print(f"warning: {files} open files allowed, the crowd of {args.crowd} sessions needs"
              f" about {args.crowd + 1024}: raise the hard limit (ulimit -Hn)")  # fmt: skip
    python = bench_python()
    load_before = os.getloadavg()
    busy = machine_busy_seconds()
    time.sleep(1.0)
    busy = machine_busy_seconds() - busy
    if busy > 0.2:
        print(f"warning: other processes keep {100 * busy:.0f}% of a core busy: the figures"
              " will be skewed (see 'other' CPU in each run)")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="ftbench-", dir=args.tmpdir))
    began = time.monotonic()
    setup: Setup | None = None
    try:
        need = (3 * args.size_mib + 3 * args.clients * args.small_mib) * MIB
        free = shutil.disk_usage(tmp).free
        if free < need:
            print(f"warning: {free // MIB} MiB free in {tmp}, the runs may need {need // MIB}")
        compile_ours()  # every client and server process starts as an installed one
        setup, kinds = prepare(args, tmp, names)
        values, runs = _run_all(names, kinds, setup, args, tmp / "logs")
        tree_results = treebench.run(trees, treebench.options(args), tmp) if trees else None
        cluster_json = _run_cluster(args, tmp) if clusters else None
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, temporary files removed", file=sys.stderr)
        return 130
    finally:
        if setup is not None and isinstance(setup.s3, S3Stored):
            setup.s3.close()
        shutil.rmtree(tmp, ignore_errors=True)
    assert setup is not None
    elapsed = time.monotonic() - began
    table = report.summaries(values)
    if names:
        print()
        counts = sorted({reps(name, args) for name in names})
        print(f"Medians of {' or '.join(map(str, counts))} runs [min-max]; {scale(args, names)};"
              f" {elapsed / 60:.1f} min")  # fmt: skip
        print(report.render_table(table, args.clients, args.idle, setup.missing))
        print()
    found = report.targets(table, args.clients, args.idle)
    for target in found:
        print(target.line())
    for line in report.missing_lines(setup.missing, names):
        print(line)
    for line in report.tls_lines(table, args.clients, args.idle):
        print(line)
    disturbed = _disturbed(runs)
    if disturbed:
        print(f"busy machine: runs where other processes used > 25% of a core: {disturbed}")
    digests = {
        r["extra"].get("blake3") for r in runs if "extra" in r and r["workload"] == "big-down"
    }
    if setup.big_digest:
        print(f"1 file BLAKE3 {setup.big_digest} (ours: verified by the client on every download)")
    tree_json = treereport.report(tree_results, args.size_mib) if tree_results else None
    failed = [r for r in runs if "error" in r] + (tree_json["failed"] if tree_json else [])
    failed += [cluster_json] if cluster_json and "error" in cluster_json else []
    data = {
        "machine": machine(),
        "packages": bench_versions(python),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workloads": [*names, *trees],
        "elapsed_s": round(elapsed, 1),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "other_cpu_before_pct": round(100 * busy, 1),
        "summary": {
            metric: {kind: s.as_dict() for kind, s in by_kind.items()}
            for metric, by_kind in table.items()
        },
        "targets": [{"name": t.name, "measured": t.measured, "pass": t.passed} for t in found],
        "runs": runs,
        "failed_runs": len(failed),
        "disturbed_runs": disturbed,
        "big_digest": setup.big_digest,
        "tree": tree_json,
        "cluster": cluster_json,
        "digests_seen": sorted(d for d in digests if d),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {args.json}" + (f"; {len(failed)} runs FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: our server side by side with the plain-socket limit and pyftpdlib.

Runs every selected workload ``--reps`` times (the one-file workloads
``--big-reps`` times) on 127.0.0.1, alternating the servers run by run and
rotating which goes first (A B C, B C A, C A B: disk speed swings between
runs), starting a fresh server process for every run.  Prints a table of
medians with min and max, the targets of issue 6 as ratios from this run,
and writes the figures and every single run to a JSON file.  Temporary files live in one temporary
folder, removed at the end; every server and load worker is stopped in a
``finally`` block.  The tree workloads of issue 15 (``--only t``, not run by
default) are in :mod:`bench.treebench`.  See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report, treebench, treereport
from bench.environment import (
    REPO_ROOT,
    bench_python,
    bench_versions,
    make_certificate,
    make_file,
    raise_open_files_limit,
)
from bench.measure import MIB, machine_busy_seconds, time_wait_sockets
from bench.servers import (
    USER,
    Kind,
    is_alive,
    our_config,
    ours_command,
    plain_command,
    pyftpd_command,
    running,
)
from bench.workloads import BIG, GROUPS, METRICS, MULTI, SMALL_DIR, WORKLOADS, Outcome, Setup

DEFAULT_JSON = REPO_ROOT / "bench" / "results.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark ours against the plain-socket limit and pyftpdlib on 127.0.0.1.",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each run (3)")
    parser.add_argument(
        "--big-reps",
        type=int,
        default=5,
        help="repetitions of the one-file runs, about a second each (5)",
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="the big file, MiB (1024)")
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients (100)")
    parser.add_argument("--small-mib", type=int, default=10, help="each client's file, MiB (10)")
    parser.add_argument("--idle", type=int, default=500, help="idle sessions for memory (500)")
    parser.add_argument(
        "--crowd", type=int, default=10000, help="idle sessions beside the active ones (10000)"
    )
    parser.add_argument("--commands", type=int, default=50, help="small commands per client (50)")
    parser.add_argument("--latency-runs", type=int, default=50, help="logins in a row (50)")
    parser.add_argument(
        "--client-procs", type=int, default=2, help="client processes sharing the clients (2)"
    )
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="bcrypt cost (12)")
    parser.add_argument(
        "--only",
        help="comma-separated workloads: a b c d e f t, or "
        + ", ".join([*WORKLOADS, *treebench.TREE_WORKLOADS])
        + " (default: a-f; t = tree, tree-big: see the --tree options)",
    )
    treebench.add_options(parser)
    parser.add_argument(
        "--workers", type=int, help="our server's worker processes (default: its own default)"
    )
    parser.add_argument("--no-tls", action="store_true", help="skip ours over TLS")
    parser.add_argument(
        "--fsync", action="store_true", help="also run uploads with fsync_uploads: true"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"({DEFAULT_JSON})")
    parser.add_argument("--tmpdir", type=Path, help="where the temporary folder goes")
    return parser


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(WORKLOADS)
    chosen: list[str] = []
    for word in (w.strip() for w in only.split(",") if w.strip()):
        known = (*WORKLOADS, *treebench.TREE_WORKLOADS)
        names = {**GROUPS, "t": treebench.TREE_WORKLOADS}.get(
            word, (word,) if word in known else None
        )
        if names is None:
            raise SystemExit(f"unknown workload {word!r}: use a-f, {', '.join(known)}")
        chosen += [n for n in names if n not in chosen]
    return [n for n in (*WORKLOADS, *treebench.TREE_WORKLOADS) if n in chosen]


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _prepare(args: argparse.Namespace, tmp: Path, names: list[str]) -> tuple[Setup, list[Kind]]:
    """Test files, homes, the users file, configs and certificate; the server kinds to run."""
    from ftpserver import users as userfile  # this work tree's server, for add_user

    if Path(userfile.__file__).resolve().parents[1] != REPO_ROOT:
        print(f"warning: ftpserver imported from {userfile.__file__}, not {REPO_ROOT}")
    src, out, logs = tmp / "src", tmp / "out", tmp / "logs"
    for folder in (src, out, logs):
        folder.mkdir()
    big_size, multi_size = args.size_mib * MIB, args.small_mib * MIB
    big_sha = multi_sha = ""
    if any(n.startswith("big") for n in names):
        print(f"writing the {args.size_mib} MiB test file ...", flush=True)
        big_sha = make_file(src / BIG, big_size)
    if any(n.startswith("multi") for n in names):
        multi_sha = make_file(src / MULTI, multi_size)
    password = secrets.token_urlsafe(16)
    homes = {
        "ours": tmp / "ours" / "home" / USER,
        "pyftpdlib": tmp / "pyftpdlib" / "home",
        "plain": tmp / "plain" / "home",
    }
    for home in homes.values():
        home.mkdir(parents=True)
        for name in (BIG, MULTI):
            if (src / name).exists():
                _link(src / name, home / name)
        (home / SMALL_DIR).mkdir()
        for i in range(10):
            (home / SMALL_DIR / f"file{i}.txt").write_bytes(b"x" * (100 * (i + 1)))
    ours_dir = tmp / "ours"
    users = ours_dir / "users.yaml"
    userfile.add_user(users, ours_dir / "home", USER, password, args.bcrypt_rounds)
    rounds = args.bcrypt_rounds
    kinds = [
        Kind("ours", ours_command(our_config(ours_dir / "server.yaml", users, ours_dir / "home",
                                             rounds, workers=args.workers)),
             homes["ours"], password),
        Kind("pyftpdlib", pyftpd_command(bench_python(), homes["pyftpdlib"], password),
             homes["pyftpdlib"], password),
        Kind("plain", plain_command(homes["plain"]), homes["plain"]),
    ]  # fmt: skip
    if not args.no_tls:
        cert, key = make_certificate(tmp)
        config = our_config(
            ours_dir / "tls.yaml",
            users,
            ours_dir / "home",
            rounds,
            tls=(cert, key),
            workers=args.workers,
        )
        kinds.insert(1, Kind("ours-tls", ours_command(config), homes["ours"], password, str(cert)))
    if args.fsync:
        config = our_config(
            ours_dir / "fsync.yaml",
            users,
            ours_dir / "home",
            rounds,
            fsync=True,
            workers=args.workers,
        )
        kinds.insert(1, Kind("ours-fsync", ours_command(config), homes["ours"], password))
    homes["ours-tls"] = homes["ours-fsync"] = homes["ours"]
    setup = Setup(
        tmp=tmp,
        src=src,
        out=out,
        homes=homes,
        big_size=big_size,
        big_digest=big_sha,
        multi_size=multi_size,
        multi_digest=multi_sha,
        clients=args.clients,
        client_procs=args.client_procs,
        idle=args.idle,
        commands=args.commands,
        crowd=args.crowd,
        latency_runs=args.latency_runs,
    )
    return setup, kinds


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


def _scale(args: argparse.Namespace, names: list[str]) -> str:
    """The sizes that apply to the selected workloads, for the table's title."""
    parts = []
    if any(n.startswith("big") for n in names):
        parts.append(f"1 file of {args.size_mib} MiB")
    if any(n.startswith("multi") for n in names):
        parts.append(f"{args.clients} clients x {args.small_mib} MiB")
    if "small" in names:
        parts.append(f"{args.clients} clients x (login + {args.commands} commands)")
    if "login" in names:
        parts.append(f"{args.latency_runs} logins in a row")
    if "memory" in names:
        parts.append(f"{args.idle} idle sessions")
    if "crowd" in names:
        parts.append(f"{args.crowd} idle sessions beside {args.clients} x {args.commands} requests")
    return ", ".join(parts)


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


def _reps(name: str, args: argparse.Namespace) -> int:
    """How many times workload ``name`` runs.

    A one-file run lasts about a second, so one burst of load from another
    guest decides its figure; more of them keep such a burst out of the median.
    """
    return int(args.big_reps if name.startswith("big") else args.reps)


def _rotated(order: list[Kind], rep: int) -> list[Kind]:
    """The servers in the order repetition ``rep`` (from 1) runs them: each goes first in turn."""
    shift = (rep - 1) % len(order)
    return order[shift:] + order[:shift]


def _run_all(
    names: list[str], kinds: list[Kind], setup: Setup, args: argparse.Namespace, logs: Path
) -> tuple[report.Values, list[dict[str, Any]]]:
    values: report.Values = {}
    runs: list[dict[str, Any]] = []
    pids: list[int] = []
    for name in names:
        workload, applies = WORKLOADS[name]
        order = [k for k in kinds if k.name in applies]
        reps = _reps(name, args)
        for rep in range(1, reps + 1):
            for kind in _rotated(order, rep):
                record: dict[str, Any] = {"workload": name, "rep": rep, "server": kind.name}
                record["time_wait_before"] = _wait_for_ports()
                started = time.monotonic()
                try:
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
                print(f"[{name} {rep}/{reps}] {kind.name:10} {text}", flush=True)
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run measured, 1 if some failed."""
    args = _parser().parse_args(argv)
    names = _selected(args.only)
    trees = [n for n in names if n in treebench.TREE_WORKLOADS]
    names = [n for n in names if n not in treebench.TREE_WORKLOADS]
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
    try:
        need = (3 * args.size_mib + 3 * args.clients * args.small_mib) * MIB
        free = shutil.disk_usage(tmp).free
        if free < need:
            print(f"warning: {free // MIB} MiB free in {tmp}, the runs may need {need // MIB}")
        setup, kinds = _prepare(args, tmp, names)
        values, runs = _run_all(names, kinds, setup, args, tmp / "logs")
        tree_results = treebench.run(trees, treebench.options(args), tmp) if trees else None
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, temporary files removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - began
    table = report.summaries(values)
    if names:
        print()
        counts = sorted({_reps(name, args) for name in names})
        print(f"Medians of {' or '.join(map(str, counts))} runs [min-max]; {_scale(args, names)};"
              f" {elapsed / 60:.1f} min")  # fmt: skip
        print(report.render_table(table, args.clients, args.idle))
        print()
    found = report.targets(table, args.clients, args.idle)
    for target in found:
        print(target.line())
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
    data = {
        "machine": _machine(),
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
        "digests_seen": sorted(d for d in digests if d),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {args.json}" + (f"; {len(failed)} runs FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

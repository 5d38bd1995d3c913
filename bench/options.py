"""The command line of ``python -m bench``: its options and what they select.

:func:`parser` builds the options (the tree ones come from
:mod:`bench.treebench`), :func:`selected` turns ``--only`` into the workloads
to run, :func:`reps` and :func:`scale` say how often and at what size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import cluster, treebench
from bench.environment import REPO_ROOT
from bench.workloads import GROUPS, WORKLOADS

__all__ = ["DEFAULT_JSON", "parser", "reps", "scale", "selected"]

DEFAULT_JSON = REPO_ROOT / "bench" / "results.json"


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench``."""
    options = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark ours against the plain-socket limit and pyftpdlib on 127.0.0.1.",
    )
    options.add_argument("--reps", type=int, default=3, help="repetitions of each run (3)")
    options.add_argument(
        "--big-reps",
        type=int,
        default=5,
        help="repetitions of the one-file runs, about a second each (5)",
    )
    options.add_argument("--size-mib", type=int, default=1024, help="the big file, MiB (1024)")
    options.add_argument("--clients", type=int, default=100, help="concurrent clients (100)")
    options.add_argument("--small-mib", type=int, default=10, help="each client's file, MiB (10)")
    options.add_argument("--idle", type=int, default=500, help="idle sessions for memory (500)")
    options.add_argument(
        "--crowd", type=int, default=10000, help="idle sessions beside the active ones (10000)"
    )
    options.add_argument("--commands", type=int, default=50, help="small commands per client (50)")
    options.add_argument(
        "--latency-runs", type=int, default=50, help="logins, and client commands, in a row (50)"
    )
    options.add_argument(
        "--client-procs", type=int, default=2, help="client processes sharing the clients (2)"
    )
    options.add_argument("--bcrypt-rounds", type=int, default=12, help="bcrypt cost (12)")
    options.add_argument(
        "--only",
        help="comma-separated workloads: a b c d e f g t, or "
        + ", ".join([*WORKLOADS, *treebench.TREE_WORKLOADS, *cluster.CLUSTER_WORKLOADS])
        + " (default: a-g; t = tree, tree-big: see the --tree options;"
        + " cluster: needs PostgreSQL and HAProxy)",
    )
    treebench.add_options(options)
    cluster.add_options(options)
    options.add_argument(
        "--workers", type=int, help="our server's worker processes (default: its own default)"
    )
    options.add_argument("--no-tls", action="store_true", help="skip ours over TLS")
    options.add_argument(
        "--no-s3", action="store_true", help="skip ours-s3 and boto3 on a throwaway SeaweedFS"
    )
    options.add_argument(
        "--fsync", action="store_true", help="also run uploads with fsync_uploads: true"
    )
    options.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"({DEFAULT_JSON})")
    options.add_argument("--tmpdir", type=Path, help="where the temporary folder goes")
    return options


def selected(only: str | None) -> list[str]:
    """The workloads ``--only`` names (groups a-g, t or single names), in the run order."""
    if not only:
        return list(WORKLOADS)
    chosen: list[str] = []
    for word in (w.strip() for w in only.split(",") if w.strip()):
        known = (*WORKLOADS, *treebench.TREE_WORKLOADS, *cluster.CLUSTER_WORKLOADS)
        names = {**GROUPS, "t": treebench.TREE_WORKLOADS}.get(
            word, (word,) if word in known else None
        )
        if names is None:
            raise SystemExit(f"unknown workload {word!r}: use a-g, {', '.join(known)}")
        chosen += [n for n in names if n not in chosen]
    order = (*WORKLOADS, *treebench.TREE_WORKLOADS, *cluster.CLUSTER_WORKLOADS)
    return [n for n in order if n in chosen]


def scale(args: argparse.Namespace, names: list[str]) -> str:
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
    if "start" in names:
        parts.append(f"{args.latency_runs} client commands in a row")
    return ", ".join(parts)


def reps(name: str, args: argparse.Namespace) -> int:
    """How many times workload ``name`` runs.

    A one-file run lasts about a second, so one burst of load from another
    guest decides its figure; more of them keep such a burst out of the median.
    """
    return int(args.big_reps if name.startswith("big") else args.reps)

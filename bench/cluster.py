"""``python -m bench.cluster``: three nodes behind HAProxy on PostgreSQL, beside one node alone.

The issue-13 workload.  In one run, on 127.0.0.1, it starts a throwaway
PostgreSQL (``bench/services.py``), one node with its state in its own
process (*single*), and three nodes with ``shared_state`` in PostgreSQL and
``proxy_protocol: true`` behind HAProxy running ``deploy/haproxy.cfg``
(*cluster*).  For a fair comparison the single node runs as many worker
processes as the three nodes together (``--single-workers``, by default
3 x ``--workers``), and both have every worker's password check cached
before anything is timed (:func:`_warm`).  Then, alternating the two,
``--reps`` times each:

* ``small``: the 100-client small-commands workload (connect, log in, 50
  ``pwd``/``ls``, quit) of ``python -m bench``, in requests per second;
* ``login``: connect+login+quit in a row, the median login in ms;
* ``big_down``: one download of a ``--size-mib`` file (1 GiB; 0 leaves it
  out), in MiB/s: through HAProxy against the direct one.

It prints the medians and the targets (cluster req/s >= 0.8 x single,
repeated login <= 2 ms, the transfer through HAProxy >= 0.8 x direct) and
writes them to ``--json``.  Everything it started is stopped in ``finally``
blocks.  See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.clients import open_session
from bench.environment import REPO_ROOT, make_file, raise_open_files_limit
from bench.measure import MIB
from bench.servers import USER, Kind, Running, ServerInfo, our_config, ours_command, running
from bench.services import Postgres, find_haproxy, find_pg_bin, free_port, start_haproxy
from bench.workloads import BIG, SMALL_DIR, Setup, big_download, login_latency, small_commands

__all__ = ["main"]

NODES = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="runs of each workload (3)")
    parser.add_argument("--clients", type=int, default=100, help="clients at once (100)")
    parser.add_argument("--client-procs", type=int, default=4, help="load processes (4)")
    parser.add_argument("--commands", type=int, default=50, help="commands per client (50)")
    parser.add_argument("--latency-runs", type=int, default=200, help="logins in a row (200)")
    parser.add_argument("--workers", type=int, default=1, help="workers per node (1)")
    parser.add_argument(
        "--single-workers",
        type=int,
        default=0,
        help="workers of the single node (0: 3 x --workers)",
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="big file, 0: none (1024)")
    parser.add_argument("--bcrypt-rounds", type=int, default=10, help="bcrypt cost (10)")
    parser.add_argument(
        "--json", type=Path, default=REPO_ROOT / "bench" / "cluster.json", help="results file"
    )
    return parser


def _node_config(base: Path, name: str, url: str) -> Path:
    """``base`` plus the cluster keys, as the config of node ``name``."""
    path = base.with_name(f"{name}.yaml")
    extra = [f"shared_state: {url}", f"node_name: {name}", "proxy_protocol: true"]
    path.write_text(base.read_text() + "\n".join(extra) + "\n")
    return path


@contextmanager
def _cluster(base: Path, url: str, home: Path, password: str, logs: Path) -> Iterator[Running]:
    """Three nodes and HAProxy; yields HAProxy as a ``Running`` server of our protocol."""
    haproxy = find_haproxy()
    if haproxy is None:
        raise SystemExit("HAProxy is not installed (apt-get install haproxy)")
    with ExitStack() as stack:
        nodes = []
        for i in range(1, NODES + 1):
            config = _node_config(base, f"node{i}", url)
            kind = Kind(f"node{i}", ours_command(config), home, password)
            nodes.append(stack.enter_context(running(kind, logs)))
        port = free_port()
        log = logs / "haproxy.log"
        proc = start_haproxy(haproxy, port, [n.info.port for n in nodes], log)
        front = Running(
            Kind("cluster", ("haproxy",), home, password),
            proc,  # type: ignore[arg-type]
            ServerInfo("ours", "127.0.0.1", port, USER, password),
            log,
        )
        stack.callback(front.stop)
        yield front


def _warm(server: Running, sessions: int) -> None:
    """Log in ``sessions`` clients at once, so that every worker of every node has the
    password check cached (a node's first login runs bcrypt; HAProxy's leastconn and the
    kernel spread concurrent connections over the nodes and their workers)."""
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        opened = list(pool.map(lambda _: open_session(server.info), range(sessions)))
    for session in opened:
        session.quit()


def _setup(args: argparse.Namespace, tmp: Path, home: Path, digest: str) -> Setup:
    src, out = tmp / "src", tmp / "out"
    src.mkdir()
    out.mkdir()
    return Setup(
        tmp=tmp,
        src=src,
        out=out,
        homes={"ours": home},
        big_size=args.size_mib * MIB,
        big_digest=digest,
        multi_size=0,
        multi_digest="",
        clients=args.clients,
        client_procs=args.client_procs,
        idle=0,
        crowd=0,
        commands=args.commands,
        latency_runs=args.latency_runs,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (no initdb/pg_ctl)")
    raise_open_files_limit()
    from ftpserver import users as userfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict[str, dict[str, list[float]]] = {"single": {}, "cluster": {}}
    postgres = Postgres(bin_dir)
    try:
        logs = tmp / "logs"
        logs.mkdir()
        home_root = tmp / "home"
        home = home_root / USER
        (home / SMALL_DIR).mkdir(parents=True)
        for i in range(10):
            (home / SMALL_DIR / f"file{i}.txt").write_bytes(b"x" * (100 * (i + 1)))
        password = secrets.token_urlsafe(16)
        users = tmp / "users.yaml"
        userfile.add_user(users, home_root, USER, password, args.bcrypt_rounds)
        base = our_config(tmp / "base.yaml", users, home_root, args.bcrypt_rounds,
                          workers=args.workers)  # fmt: skip
        single_workers = args.single_workers or NODES * args.workers
        alone_config = our_config(tmp / "single.yaml", users, home_root, args.bcrypt_rounds,
                                  workers=single_workers)  # fmt: skip
        digest = make_file(home / BIG, args.size_mib * MIB) if args.size_mib else ""
        setup = _setup(args, tmp, home, digest)
        print("starting PostgreSQL ...", flush=True)
        postgres.start()
        url = postgres.create_database()
        single = Kind("ours", ours_command(alone_config), home, password)
        with running(single, logs) as alone, _cluster(base, url, home, password, logs) as front:
            print(f"single: 1 node x {single_workers} workers; cluster: {NODES} nodes x "
                  f"{args.workers} workers behind HAProxy", flush=True)  # fmt: skip
            for server in (alone, front):
                _warm(server, 4 * single_workers)
            for rep in range(args.reps):
                for name, server in (("single", alone), ("cluster", front)):
                    small = small_commands(server, setup).metrics["small"]
                    login = login_latency(server, setup).metrics["login_ms"]
                    results[name].setdefault("small", []).append(small)
                    results[name].setdefault("login_ms", []).append(login)
                    if args.size_mib:
                        big = big_download(server, setup).metrics["big_down"]
                        results[name].setdefault("big_down", []).append(big)
                    print(f"rep {rep + 1} {name:8} small {small:8.0f} req/s  login {login:6.2f} ms",
                          flush=True)  # fmt: skip
    finally:
        postgres.close()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in results.items()}
    ratio = medians["cluster"]["small"] / medians["single"]["small"]
    login = medians["cluster"]["login_ms"]
    print(f"\nsmall commands: single {medians['single']['small']:.0f} req/s, "
          f"cluster {medians['cluster']['small']:.0f} req/s: {ratio:.2f}x "
          f"(target >= 0.8x: {'met' if ratio >= 0.8 else 'NOT met'})")  # fmt: skip
    print(f"repeated login: single {medians['single']['login_ms']:.2f} ms, cluster {login:.2f} ms "
          f"(target <= 2 ms: {'met' if login <= 2 else 'NOT met'})")  # fmt: skip
    if args.size_mib:
        big = medians["cluster"]["big_down"] / medians["single"]["big_down"]
        print(f"{args.size_mib} MiB download: direct {medians['single']['big_down']:.0f} MiB/s, "
              f"through HAProxy {medians['cluster']['big_down']:.0f} MiB/s: {big:.2f}x "
              f"(target >= 0.8x: {'met' if big >= 0.8 else 'NOT met'})")  # fmt: skip
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {load[0]} {load[1]} {load[2]} (1, 5, 15 min)")
    document: dict[str, Any] = {
        "medians": medians,
        "runs": results,
        "args": vars(args),
        "load_at_end": load,
    }
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

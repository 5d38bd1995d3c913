"""The ``cluster`` workload of ``python -m bench`` (issue 13): three nodes behind HAProxy.

``python -m bench --only cluster`` (not in the default run: it needs
PostgreSQL's ``initdb``/``pg_ctl`` and ``haproxy``; without them it reports
n/a and why).  In one run, on 127.0.0.1, it starts a throwaway PostgreSQL
(``bench/services.py``), one node with its state in its own processes
(*single*: our server as the other workloads run it, ``--workers`` or its
default of one worker per CPU), and three nodes with ``shared_state`` in
PostgreSQL and ``proxy_protocol: true`` (``--node-workers`` each, 1 by
default) behind HAProxy running ``deploy/haproxy.cfg`` with
``--haproxy-threads`` threads (1 by default: on one machine it shares the
cores with the nodes and the clients) (*cluster*).  Before
anything is timed every worker of both has the password check cached
(:func:`_warm`).  Then, alternating the two and rotating which goes first:

* ``--reps`` times the 100-client small-commands workload (req/s) and
  connect+login+quit in a row (the median login, ms), with the CPU each
  group of processes used during the small commands (:mod:`bench.clusterreport`);
* ``--big-reps`` times one download of the ``--size-mib`` file, direct
  against through HAProxy (MiB/s).

:mod:`bench.clusterreport` prints the medians and the targets (cluster
req/s >= 0.8x single, repeated login <= 2 ms, the download through HAProxy
>= 0.8x the direct one).  Everything started is stopped in ``finally``
blocks.  ``python -m bench.cluster [OPTIONS]`` is short for
``python -m bench --only cluster [OPTIONS]``.  See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clients import open_session
from bench.clusterreport import ClusterResults, CpuProbe
from bench.environment import make_file
from bench.measure import MIB, rotated
from bench.servers import USER, Kind, Running, ServerInfo, our_config, ours_command, running
from bench.services import Postgres, find_haproxy, find_pg_bin, free_port, start_haproxy
from bench.workloads import BIG, SMALL_DIR, Setup, big_download, login_latency, small_commands

__all__ = ["CLUSTER_WORKLOADS", "add_options", "run", "unavailable"]

CLUSTER_WORKLOADS = ("cluster",)
NODES = 3


def add_options(options: argparse.ArgumentParser) -> None:
    """The cluster workload's own option (the rest are ``python -m bench``'s)."""
    options.add_argument(
        "--node-workers", type=int, default=1, help="cluster: worker processes per node (1)"
    )
    options.add_argument(
        "--haproxy-threads",
        type=int,
        default=1,
        help="cluster: HAProxy's threads (1: it shares the cores with the nodes; 0: one per CPU)",
    )


def unavailable() -> str | None:
    """Why the cluster workload cannot run here, or None."""
    if find_pg_bin() is None:
        return "PostgreSQL is not installed (no initdb/pg_ctl; apt-get install postgresql)"
    if find_haproxy() is None:
        return "HAProxy is not installed (apt-get install haproxy)"
    return None


@dataclass
class _Sides:
    """The two servers under test and the processes whose CPU is counted."""

    single: Running
    front: Running  # HAProxy, as a server of our protocol
    nodes: list[Running]
    postmaster: int

    def groups(self, side: str) -> dict[str, list[int]]:
        nodes = [self.single.pid] if side == "single" else [n.pid for n in self.nodes]
        haproxy = [self.front.pid] if side == "cluster" else []
        return {"nodes": nodes, "haproxy": haproxy, "postgres": [self.postmaster]}


def _node_config(base: Path, name: str, url: str) -> Path:
    """``base`` plus the cluster keys, as the config of node ``name``."""
    path = base.with_name(f"{name}.yaml")
    extra = [f"shared_state: {url}", f"node_name: {name}", "proxy_protocol: true"]
    path.write_text(base.read_text() + "\n".join(extra) + "\n")
    return path


@contextmanager
def _cluster(
    base: Path, url: str, home: Path, password: str, logs: Path, threads: int
) -> Iterator[tuple[Running, list[Running]]]:
    """Three nodes and HAProxy; yields HAProxy as a ``Running`` server of our protocol."""
    haproxy = find_haproxy()
    assert haproxy is not None, "checked by unavailable()"
    with ExitStack() as stack:
        nodes = []
        for i in range(1, NODES + 1):
            config = _node_config(base, f"node{i}", url)
            kind = Kind(f"node{i}", ours_command(config), home, password)
            nodes.append(stack.enter_context(running(kind, logs)))
        port = free_port()
        log = logs / "haproxy.log"
        settings = {"FT_NBTHREAD": str(threads)} if threads else {}
        proc = start_haproxy(haproxy, port, [n.info.port for n in nodes], log, **settings)
        front = Running(
            Kind("cluster", ("haproxy",), home, password),
            proc,  # type: ignore[arg-type]
            ServerInfo("ours", "127.0.0.1", port, USER, password),
            log,
        )
        stack.callback(front.stop)
        yield front, nodes


def _warm(server: Running, sessions: int) -> None:
    """Log in ``sessions`` clients at once, so that every worker of every node has the
    password check cached (a node's first login runs bcrypt; HAProxy's leastconn and the
    kernel spread concurrent connections over the nodes and their workers)."""
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        opened = list(pool.map(lambda _: open_session(server.info), range(sessions)))
    for session in opened:
        session.quit()


def _setup(args: argparse.Namespace, root: Path, home: Path, digest: str) -> Setup:
    src, out = root / "src", root / "out"
    src.mkdir()
    out.mkdir()
    return Setup(
        tmp=root,
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


def _measure(sides: _Sides, setup: Setup, args: argparse.Namespace, out: ClusterResults) -> None:
    """The alternated runs: small commands and logins, then the big downloads."""
    servers = {"single": sides.single, "cluster": sides.front}
    for rep in range(1, args.reps + 1):
        for side in rotated(["single", "cluster"], rep):
            probe = CpuProbe(sides.groups(side))
            probe.start()
            small = small_commands(servers[side], setup)
            used = probe.stop()
            extra = small.extra
            used["clients"] = extra["client_cpu_s"]
            counted = used["nodes"] + used["haproxy"] + used["postgres"]
            used["other"] = extra["server_cpu_s"] + extra["other_cpu_s"] - counted
            out.add_cpu(side, used, extra["seconds"])
            login = login_latency(servers[side], setup).metrics["login_ms"]
            out.add(side, "small", small.metrics["small"])
            out.add(side, "login_ms", login)
            print(f"[cluster {rep}/{args.reps}] {side:8} small {small.metrics['small']:8.0f} "
                  f"req/s  login {login:6.2f} ms", flush=True)  # fmt: skip
    if not args.size_mib:
        return
    for rep in range(1, args.big_reps + 1):
        for side in rotated(["single", "cluster"], rep):
            speed = big_download(servers[side], setup).metrics["big_down"]
            out.add(side, "big_down", speed)
            print(f"[cluster big {rep}/{args.big_reps}] {side:8} {speed:6.0f} MiB/s", flush=True)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run the cluster workload in ``tmp``; the JSON document (``{"n/a": why}`` if it cannot)."""
    why = unavailable()
    if why is not None:
        print(f"cluster: n/a ({why})")
        return {"n/a": why}
    from ftpserver import users as userfile  # this work tree's server, for add_user

    root = tmp / "cluster"
    logs, home_root = root / "logs", root / "home"
    home = home_root / USER
    (home / SMALL_DIR).mkdir(parents=True)
    logs.mkdir()
    for i in range(10):
        (home / SMALL_DIR / f"file{i}.txt").write_bytes(b"x" * (100 * (i + 1)))
    password = secrets.token_urlsafe(16)
    users = root / "users.yaml"
    userfile.add_user(users, home_root, USER, password, args.bcrypt_rounds)
    rounds = args.bcrypt_rounds
    base = our_config(root / "base.yaml", users, home_root, rounds, workers=args.node_workers)
    alone = our_config(root / "single.yaml", users, home_root, rounds, workers=args.workers)
    if args.size_mib:
        print(f"writing the {args.size_mib} MiB test file of the cluster workload ...", flush=True)
    digest = make_file(home / BIG, args.size_mib * MIB) if args.size_mib else ""
    setup = _setup(args, root, home, digest)
    single_workers = args.workers or "default"
    results = ClusterResults({
        "description": f"1 node x {single_workers} workers (in-process state) against "
                       f"{NODES} nodes x {args.node_workers} behind HAProxy "
                       f"({args.haproxy_threads or 'one per CPU'} threads), PostgreSQL state",
        "size_mib": args.size_mib,
        "workers": args.workers,
        "node_workers": args.node_workers,
        "haproxy_threads": args.haproxy_threads or "one per CPU",
    })  # fmt: skip
    bin_dir = find_pg_bin()
    assert bin_dir is not None, "checked by unavailable()"
    postgres = Postgres(bin_dir)
    try:
        print("cluster: starting PostgreSQL, 3 nodes, HAProxy and a single node ...", flush=True)
        postgres.start()
        url = postgres.create_database()
        postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
        single = Kind("ours", ours_command(alone), home, password)
        with (
            running(single, logs) as server,
            _cluster(base, url, home, password, logs, args.haproxy_threads) as (front, nodes),
        ):
            processes = max(NODES * args.node_workers, args.workers or os.cpu_count() or 1)
            for each in (server, front):
                _warm(each, 4 * processes)
            results.note_load("at the start")
            _measure(_Sides(server, front, nodes, postmaster), setup, args, results)
            results.note_load("at the end")
    finally:
        postgres.close()
    return results.report()


if __name__ == "__main__":  # python -m bench.cluster: the same as python -m bench --only cluster
    from bench.__main__ import main

    sys.exit(main(["--only", "cluster", *sys.argv[1:]]))

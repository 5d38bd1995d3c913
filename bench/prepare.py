"""What a benchmark run needs before the servers start.

:func:`prepare` writes the test files, the servers' homes (hard links where
the filesystem allows), our users file, server configs and certificate,
and returns the :class:`~bench.workloads.Setup` with the server kinds to run;
:func:`machine` describes the machine for the JSON results.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.environment import REPO_ROOT, bench_python, make_certificate, make_file
from bench.measure import MIB
from bench.s3columns import prepare_s3
from bench.servers import USER, Kind, our_config, ours_command, plain_command, pyftpd_command
from bench.workloads import BIG, MULTI, S3_KINDS, SMALL_DIR, WORKLOADS, Setup

__all__ = ["machine", "prepare"]


def machine() -> dict[str, Any]:
    """The CPU, memory, kernel, Python and commit the figures were measured on."""
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


def prepare(args: argparse.Namespace, tmp: Path, names: list[str]) -> tuple[Setup, list[Kind]]:
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
    s3_home, missing = None, {}
    if not args.no_s3 and any(set(S3_KINDS) & set(WORKLOADS[n][1]) for n in names):
        s3_home, s3_kinds, reason = prepare_s3(args, tmp, users, password, src)
        kinds += s3_kinds
        missing = dict.fromkeys(S3_KINDS, reason) if reason else {}
        if reason:
            print(f"ours-s3 and boto3: n/a, {reason}")
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
        s3=s3_home,
        missing=missing,
    )
    return setup, kinds
